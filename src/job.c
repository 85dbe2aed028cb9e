/*
 * job: allocation of the unit of work that crosses the queue.  Kept as a
 * few heap strings because URLs have no useful upper bound below the list
 * line limit, and only queued or in-flight jobs exist at any time.
 */
#include "job.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

job *
job_new(const char *url, const char *src, const char *ctype, int owned, const char *stem)
{
	job *j = calloc(1, sizeof *j);

	if (!j)
		return NULL;
	j->url = strdup(url);
	j->src = strdup(src);
	j->ctype = ctype ? strdup(ctype) : NULL;
	j->owned = owned;
	snprintf(j->stem, sizeof j->stem, "%s", stem);
	if (!j->url || !j->src || (ctype && !j->ctype)) {
		job_free(j);
		return NULL;
	}
	return j;
}

void
job_free(job *j)
{
	if (!j)
		return;
	free(j->url);
	free(j->src);
	free(j->ctype);
	free(j);
}
