/*
 * spare: recycled download files.  A finished download in incoming/ is not
 * unlinked but renamed to incoming/.thumbd-spare-N, and the next download
 * is that file renamed to its temp name (.thumbd-part.<stem>, see name.h): files keep their inodes instead
 * of one being freed and another allocated per image.
 *
 * Why: ext4 will not hand out an inode freed in the last seconds (minutes,
 * while its inode table block is dirty), and scans past every such inode
 * on each new file.  A run that frees one inode per image made every later
 * create in the directory pay for all of them: about a quarter of the CPU
 * of 2,000 small downloads went to ext4's recently_deleted() (bench/NOTES.md).
 *
 * Not emptied on the way: on ext4, truncating a file to zero marks it so
 * that its next close forces its new data to disk (auto_da_alloc, a guard
 * for programs that rewrite files in place), and truncating dirty pages
 * starts their writeback first; both cost more than the download.  So a
 * spare keeps its old bytes and blocks (up to SPARE_KEEP_BYTES; a larger
 * one is emptied), the next download writes over them from offset 0, and
 * its writer must cut the file to the length it wrote (ftruncate) before
 * anyone reads it.
 *
 * Thread-safe: the fetch thread takes files, the workers give them back.
 */
#ifndef THUMBD_SPARE_H
#define THUMBD_SPARE_H

typedef struct spares spares;

/* Up to cap spare files in dir.  NULL when out of memory. */
spares *spares_new(const char *dir, int cap);
/* Deletes the spare files it holds; accepts NULL. */
void spares_free(spares *s);

/* A writable file at path (which must not exist), positioned at 0: a spare
 * renamed there, with its old bytes still in it, or a new empty one.  Cut
 * it to what was written before closing it.  Returns the descriptor
 * (O_CLOEXEC), or -1 with errno. */
int spares_open(spares *s, const char *path);

/* path (a finished download) is no longer needed: keep it as a spare
 * (emptied only when large), or unlink it when the pool is full.  0, or -1 with errno (path
 * may then still exist). */
int spares_put(spares *s, const char *path);

/* No file will be taken any more (no download will start again): delete
 * the spares held now, and from here on spares_put deletes its file.  The
 * caller is the thread that would otherwise idle, so the deletes are not
 * left for the end of the run, when nothing else is left to do. */
void spares_retire(spares *s);

#endif
