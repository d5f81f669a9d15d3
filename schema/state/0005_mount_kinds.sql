-- A mount is served by a FUSE process ('fuse', pid alive while it serves) or is
-- a kernel bind mount of a disk-mode workspace directory ('bind': no process;
-- live while /proc/self/mountinfo shows `source` mounted at `mountpoint`).

ALTER TABLE mounts ADD COLUMN kind TEXT NOT NULL DEFAULT 'fuse' CHECK (kind IN ('fuse', 'bind'));
ALTER TABLE mounts ADD COLUMN source TEXT;
