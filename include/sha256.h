/*
 * sha256: FIPS 180-4 SHA-256, used to give colliding output names a suffix
 * a user can recompute with `printf %s URL | sha256sum | cut -c1-8`.
 */
#ifndef THUMBD_SHA256_H
#define THUMBD_SHA256_H

#include <stddef.h>
#include <stdint.h>

void sha256(const void *data, size_t len, uint8_t out[32]);
/* Lower-case hex of the digest, 64 characters + NUL. */
void sha256_hex(const void *data, size_t len, char out[65]);

#endif
