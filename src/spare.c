/*
 * spare: see include/spare.h.  Two stacks of slot numbers under one mutex:
 * slots whose spare file exists (ready to take) and slots without one
 * (free to fill).  A slot is moved between them under the lock and its file
 * renamed outside it: only the thread holding a slot number touches that
 * name, so the renames never race.
 */
#include "spare.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "name.h"

#define SPARE_KEEP_BYTES (4 << 20)

struct spares {
	pthread_mutex_t mu;
	char *dir;
	int cap;
	int nready, nfree;
	int retired;            /* spares_retire: keep nothing more */
	int *ready, *free;      /* stacks of slot numbers, cap each */
};

static void
slot_path(const spares *s, int slot, char *out, size_t outlen)
{
	snprintf(out, outlen, "%s/" NAME_SPARE_PREFIX "%d", s->dir, slot);
}

spares *
spares_new(const char *dir, int cap)
{
	spares *s = calloc(1, sizeof *s);

	if (!s)
		return NULL;
	if (cap < 1)
		cap = 1;
	s->cap = cap;
	s->dir = strdup(dir);
	s->ready = calloc((size_t)cap, sizeof *s->ready);
	s->free = calloc((size_t)cap, sizeof *s->free);
	if (!s->dir || !s->ready || !s->free) {
		free(s->dir);
		free(s->ready);
		free(s->free);
		free(s);
		return NULL;
	}
	pthread_mutex_init(&s->mu, NULL);
	for (int i = cap - 1; i >= 0; i--)
		s->free[s->nfree++] = i;
	return s;
}

void
spares_retire(spares *s)
{
	char path[4200];
	int slot;

	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	s->retired = 1;
	pthread_mutex_unlock(&s->mu);
	for (;;) {
		pthread_mutex_lock(&s->mu);
		slot = s->nready > 0 ? s->ready[--s->nready] : -1;
		if (slot >= 0)
			s->free[s->nfree++] = slot;
		pthread_mutex_unlock(&s->mu);
		if (slot < 0)
			break;
		slot_path(s, slot, path, sizeof path);
		unlink(path);
	}
}

void
spares_free(spares *s)
{
	if (!s)
		return;
	spares_retire(s);       /* deletes the spare files still held */
	pthread_mutex_destroy(&s->mu);
	free(s->dir);
	free(s->ready);
	free(s->free);
	free(s);
}

int
spares_open(spares *s, const char *path)
{
	char spare[4200];
	int slot = -1, fd;

	pthread_mutex_lock(&s->mu);
	if (s->nready > 0)
		slot = s->ready[--s->nready];
	pthread_mutex_unlock(&s->mu);
	if (slot >= 0) {
		slot_path(s, slot, spare, sizeof spare);
		/* gone (someone cleaned incoming/): a new file will do */
		int moved = rename(spare, path) == 0;
		pthread_mutex_lock(&s->mu);
		s->free[s->nfree++] = slot;
		pthread_mutex_unlock(&s->mu);
		if (moved && (fd = open(path, O_WRONLY | O_CLOEXEC)) >= 0)
			return fd;
	}
	return open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
}

int
spares_put(spares *s, const char *path)
{
	char spare[4200];
	int slot = -1;

	pthread_mutex_lock(&s->mu);
	if (s->nfree > 0 && !s->retired)
		slot = s->free[--s->nfree];
	pthread_mutex_unlock(&s->mu);
	if (slot >= 0) {
		slot_path(s, slot, spare, sizeof spare);
		/* A small one keeps its blocks, to be written over (see spare.h);
		 * a large one is emptied, so spares never hold much disk. */
		struct stat st;
		if (stat(path, &st) == 0 && (st.st_size <= SPARE_KEEP_BYTES || truncate(path, 0) == 0)
		    && rename(path, spare) == 0) {
			pthread_mutex_lock(&s->mu);
			s->ready[s->nready++] = slot;
			pthread_mutex_unlock(&s->mu);
			return 0;
		}
		pthread_mutex_lock(&s->mu);
		s->free[s->nfree++] = slot;
		pthread_mutex_unlock(&s->mu);
	}
	return unlink(path);
}
