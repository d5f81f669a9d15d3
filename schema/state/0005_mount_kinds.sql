-- A mount is served by a FUSE process ('fuse': live while its pid runs), is a
-- kernel bind mount of a disk-mode workspace directory ('bind': no process;
-- live while /proc/self/mountinfo shows `source` mounted at `mountpoint`), or
-- is a bind mount inside the private mount namespace of one command
-- ('private', `vfs exec` as an ordinary user: live while its pid runs).

ALTER TABLE mounts ADD COLUMN kind TEXT NOT NULL DEFAULT 'fuse'
    CHECK (kind IN ('fuse', 'bind', 'private'));
ALTER TABLE mounts ADD COLUMN source TEXT;
