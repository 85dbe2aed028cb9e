/*
 * notify: the systemd side of the daemon, through libsystemd's sd_notify
 * (the reference implementation of the notify protocol: NOTIFY_SOCKET,
 * abstract sockets, credentials).  Every call is a no-op when thumbd was
 * not started by systemd (no NOTIFY_SOCKET), so the daemon runs the same
 * in a terminal.
 */
#ifndef THUMBD_NOTIFY_H
#define THUMBD_NOTIFY_H

#include <stdint.h>

/* "READY=1", "STOPPING=1", "WATCHDOG=1", "STATUS=..." ...; printf-style. */
void notify(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* RELOADING=1 with the MONOTONIC_USEC= systemd 253+ wants for Type=notify-reload. */
void notify_reloading(void);

/* The watchdog interval systemd asked for (WATCHDOG_USEC, for this pid),
 * in microseconds; 0 when there is no watchdog. */
uint64_t notify_watchdog_usec(void);

/* 1 when stderr goes to the journal (JOURNAL_STREAM matches fd 2) or we
 * run under systemd (INVOCATION_ID): log to stderr. */
int notify_under_systemd(void);

/* 1 when stderr is the journal itself (JOURNAL_STREAM matches fd 2): only
 * then do log lines carry journald's priority prefix instead of a time. */
int notify_stderr_is_journal(void);

#endif
