/*
 * rofs: a FUSE passthrough filesystem that can be switched read-only at run time,
 * for the fault suite's "disk store made read-only" fault.
 *
 *   rofs SOURCE MOUNTPOINT [fuse options]    (mirrors SOURCE at MOUNTPOINT)
 *   kill -USR1 <pid>   every write from now on fails with EROFS
 *   kill -USR2 <pid>   writable again
 *
 * Why not `mount -o remount,ro`: the kernel refuses to remount a filesystem
 * read-only while any file on it is open for writing (EBUSY), and a running
 * gateway always holds its SQLite files open for writing. ext4's
 * errors=remount-ro (via trigger_fs_error) does flip a busy filesystem, but it
 * aborts the journal and cannot be made writable again without unmounting,
 * which loses the page cache: that is a disk failure, not a read-only period.
 * Here the errors come from a real filesystem through the real syscalls, so
 * SQLite sees exactly what a read-only disk gives it.
 */
#define FUSE_USE_VERSION 31
#define _GNU_SOURCE
#include <fuse.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/time.h>

static volatile sig_atomic_t readonly_mode = 0;
static char source[PATH_MAX];

static void on_usr1(int sig) { (void)sig; readonly_mode = 1; }
static void on_usr2(int sig) { (void)sig; readonly_mode = 0; }

static void full(char out[PATH_MAX], const char *path) {
  snprintf(out, PATH_MAX, "%s%s", source, path);
}

#define RO_GUARD() do { if (readonly_mode) return -EROFS; } while (0)

static void *rofs_init(struct fuse_conn_info *conn, struct fuse_config *cfg) {
  (void)conn;
  cfg->use_ino = 1;
  /* No attribute or entry caching: every size and mtime comes from the source. */
  cfg->entry_timeout = 0;
  cfg->attr_timeout = 0;
  cfg->negative_timeout = 0;
  /* Write-through: a failed write must fail the write(2) call, not a later writeback. */
  conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
  return NULL;
}

static int rofs_getattr(const char *path, struct stat *st, struct fuse_file_info *fi) {
  if (fi) return fstat((int)fi->fh, st) == -1 ? -errno : 0;
  char p[PATH_MAX]; full(p, path);
  return lstat(p, st) == -1 ? -errno : 0;
}

static int rofs_access(const char *path, int mask) {
  char p[PATH_MAX]; full(p, path);
  if ((mask & W_OK) && readonly_mode) return -EROFS;
  return access(p, mask) == -1 ? -errno : 0;
}

static int rofs_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t off, struct fuse_file_info *fi, enum fuse_readdir_flags flags) {
  (void)off; (void)fi; (void)flags;
  char p[PATH_MAX]; full(p, path);
  DIR *d = opendir(p);
  if (!d) return -errno;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    struct stat st;
    memset(&st, 0, sizeof st);
    st.st_ino = e->d_ino;
    st.st_mode = (mode_t)e->d_type << 12;
    if (filler(buf, e->d_name, &st, 0, 0)) break;
  }
  closedir(d);
  return 0;
}

static int rofs_mkdir(const char *path, mode_t mode) {
  RO_GUARD(); char p[PATH_MAX]; full(p, path);
  return mkdir(p, mode) == -1 ? -errno : 0;
}

static int rofs_unlink(const char *path) {
  RO_GUARD(); char p[PATH_MAX]; full(p, path);
  return unlink(p) == -1 ? -errno : 0;
}

static int rofs_rmdir(const char *path) {
  RO_GUARD(); char p[PATH_MAX]; full(p, path);
  return rmdir(p) == -1 ? -errno : 0;
}

static int rofs_rename(const char *from, const char *to, unsigned int flags) {
  RO_GUARD();
  if (flags) return -EINVAL;
  char a[PATH_MAX], b[PATH_MAX]; full(a, from); full(b, to);
  return rename(a, b) == -1 ? -errno : 0;
}

static int rofs_chmod(const char *path, mode_t mode, struct fuse_file_info *fi) {
  RO_GUARD();
  if (fi) return fchmod((int)fi->fh, mode) == -1 ? -errno : 0;
  char p[PATH_MAX]; full(p, path);
  return chmod(p, mode) == -1 ? -errno : 0;
}

static int rofs_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi) {
  RO_GUARD();
  if (fi) return fchown((int)fi->fh, uid, gid) == -1 ? -errno : 0;
  char p[PATH_MAX]; full(p, path);
  return lchown(p, uid, gid) == -1 ? -errno : 0;
}

static int rofs_truncate(const char *path, off_t size, struct fuse_file_info *fi) {
  RO_GUARD();
  if (fi) return ftruncate((int)fi->fh, size) == -1 ? -errno : 0;
  char p[PATH_MAX]; full(p, path);
  return truncate(p, size) == -1 ? -errno : 0;
}

static int rofs_utimens(const char *path, const struct timespec ts[2], struct fuse_file_info *fi) {
  RO_GUARD();
  if (fi) return futimens((int)fi->fh, ts) == -1 ? -errno : 0;
  char p[PATH_MAX]; full(p, path);
  return utimensat(AT_FDCWD, p, ts, AT_SYMLINK_NOFOLLOW) == -1 ? -errno : 0;
}

static int rofs_create(const char *path, mode_t mode, struct fuse_file_info *fi) {
  RO_GUARD(); char p[PATH_MAX]; full(p, path);
  int fd = open(p, fi->flags, mode);
  if (fd == -1) return -errno;
  fi->fh = (uint64_t)fd;
  return 0;
}

static int rofs_open(const char *path, struct fuse_file_info *fi) {
  if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) RO_GUARD();
  char p[PATH_MAX]; full(p, path);
  int fd = open(p, fi->flags);
  if (fd == -1) return -errno;
  fi->fh = (uint64_t)fd;
  return 0;
}

static int rofs_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
  (void)path;
  ssize_t n = pread((int)fi->fh, buf, size, off);
  return n == -1 ? -errno : (int)n;
}

static int rofs_write(const char *path, const char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
  (void)path;
  RO_GUARD();
  ssize_t n = pwrite((int)fi->fh, buf, size, off);
  return n == -1 ? -errno : (int)n;
}

static int rofs_statfs(const char *path, struct statvfs *st) {
  char p[PATH_MAX]; full(p, path);
  if (statvfs(p, st) == -1) return -errno;
  if (readonly_mode) st->f_flag |= ST_RDONLY;
  return 0;
}

static int rofs_release(const char *path, struct fuse_file_info *fi) {
  (void)path;
  close((int)fi->fh);
  return 0;
}

static int rofs_fsync(const char *path, int datasync, struct fuse_file_info *fi) {
  (void)path;
  /* A read-only filesystem has nothing dirty to sync: fsync succeeds, as on ext4. */
  if (readonly_mode) return 0;
  int r = datasync ? fdatasync((int)fi->fh) : fsync((int)fi->fh);
  return r == -1 ? -errno : 0;
}

static int rofs_fallocate(const char *path, int mode, off_t off, off_t len, struct fuse_file_info *fi) {
  (void)path;
  RO_GUARD();
  return fallocate((int)fi->fh, mode, off, len) == -1 ? -errno : 0;
}

static const struct fuse_operations ops = {
  .init = rofs_init,
  .getattr = rofs_getattr,
  .access = rofs_access,
  .readdir = rofs_readdir,
  .mkdir = rofs_mkdir,
  .unlink = rofs_unlink,
  .rmdir = rofs_rmdir,
  .rename = rofs_rename,
  .chmod = rofs_chmod,
  .chown = rofs_chown,
  .truncate = rofs_truncate,
  .utimens = rofs_utimens,
  .create = rofs_create,
  .open = rofs_open,
  .read = rofs_read,
  .write = rofs_write,
  .statfs = rofs_statfs,
  .release = rofs_release,
  .fsync = rofs_fsync,
  .fallocate = rofs_fallocate,
};

int main(int argc, char *argv[]) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s SOURCE MOUNTPOINT [fuse options]\n", argv[0]);
    return 2;
  }
  if (!realpath(argv[1], source)) {
    perror("source");
    return 2;
  }
  signal(SIGUSR1, on_usr1);
  signal(SIGUSR2, on_usr2);
  /* fuse_main gets: prog MOUNTPOINT -f [options] (the source is ours). */
  char **fargv = calloc((size_t)argc + 2, sizeof(char *));
  int fargc = 0;
  fargv[fargc++] = argv[0];
  fargv[fargc++] = argv[2];
  fargv[fargc++] = "-f";
  for (int i = 3; i < argc; i++) fargv[fargc++] = argv[i];
  return fuse_main(fargc, fargv, &ops, NULL);
}
