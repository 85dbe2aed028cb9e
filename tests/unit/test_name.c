/* Unit tests: output naming, sanitising, the owner registry (name.c, sha256.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "name.h"
#include "sha256.h"

static void
stem_of(const char *url, const char *want_stem, const char *want_ext)
{
	char stem[NAME_STEM_MAX + 1], ext[NAME_EXT_MAX + 1];

	name_from_url(url, stem, ext);
	CHECK_STR(stem, want_stem);
	CHECK_STR(ext, want_ext);
}

static int
safe(const char *s)
{
	if (!*s || s[0] == '.')
		return 0;
	for (; *s; s++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", *s))
			return 0;
	return 1;
}

static void
test_stems(void)
{
	char stem[NAME_STEM_MAX + 1], ext[NAME_EXT_MAX + 1], longurl[600];
	static const char *const hostile[] = {
		"http://h/..%2F..%2Fetc%2Fpasswd", "http://h/%2e%2e", "http://h/.", "http://h/..",
		"http://h/a/../..", "http://h/%00x.jpg", "http://h/.hidden.png", "http://h/%", "http://h/%4",
		"http://h/a%2Fb", "http://h", "http://h?x=/y.jpg", "http://h/\xff\xfe.jpg",
	};

	stem_of("http://example.com/images/photo.JPG", "photo", "jpg");
	stem_of("https://example.com/a/b/c.tar.gz?x=1#frag", "c.tar", "gz");
	stem_of("http://example.com/img?id=7", "img", "");
	stem_of("http://example.com/dir/", "image", "");
	stem_of("http://example.com", "image", "");
	stem_of("http://example.com/caf%C3%A9.jpg", "caf__", "jpg");
	stem_of("http://example.com/a%20b.png", "a_b", "png");
	stem_of("http://example.com/..%2F..%2Fx.jpg", "_._.._x", "jpg");
	stem_of("http://example.com/%2E%2E", "_", "");
	stem_of("http://example.com/.bashrc", "_bashrc", "");
	stem_of("http://example.com/x.y.z", "x.y", "z");
	for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
		name_from_url(hostile[i], stem, ext);
		CHECK(safe(stem));
		CHECK(strcmp(stem, ".") != 0 && strcmp(stem, "..") != 0);
	}
	memset(longurl, 0, sizeof longurl);
	strcpy(longurl, "http://h/");
	memset(longurl + 9, 'a', 300);
	strcat(longurl, ".jpg");
	name_from_url(longurl, stem, ext);
	CHECK_INT(strlen(stem), NAME_STEM_MAX);
	CHECK_STR(ext, "jpg");
	name_from_path("/some/dir/Photo One.jpeg", stem, ext);
	CHECK_STR(stem, "Photo_One");
	CHECK_STR(ext, "jpeg");
}

static void
test_sha256(void)
{
	char hex[65];

	sha256_hex("", 0, hex);
	CHECK_STR(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	sha256_hex("abc", 3, hex);
	CHECK_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56, hex);
	CHECK_STR(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void
test_registry(void)
{
	char dir[] = "/tmp/thumbd-test-name-XXXXXX", err[256], out[NAME_MAX_OUT], hex[65], want[128], cmd[96];
	const char *a = "http://h/a/same.jpg", *b = "http://h/b/same.jpg";
	names *n;

	CHECK(mkdtemp(dir) != NULL);
	n = names_open(dir, err, sizeof err);
	CHECK(n != NULL);
	if (!n)
		return;
	CHECK_INT(names_claim(n, a, "same", out, err, sizeof err), 0);
	CHECK_STR(out, "same");
	CHECK_INT(names_claim(n, b, "same", out, err, sizeof err), 0);
	sha256_hex(b, strlen(b), hex);
	snprintf(want, sizeof want, "same-%.8s", hex);
	CHECK_STR(out, want);
	CHECK_INT(names_claim(n, a, "same", out, err, sizeof err), 1);   /* duplicate in this run */
	names_close(n);

	/* a later run: the owners are remembered, whatever the order */
	n = names_open(dir, err, sizeof err);
	CHECK(n != NULL);
	if (!n)
		return;
	CHECK_INT(names_claim(n, b, "same", out, err, sizeof err), 0);
	CHECK_STR(out, want);
	CHECK_INT(names_claim(n, a, "same", out, err, sizeof err), 0);
	CHECK_STR(out, "same");
	CHECK_INT(names_claim(n, "http://h/c/other.png", "other", out, err, sizeof err), 0);
	CHECK_STR(out, "other");
	names_close(n);
	names_close(NULL);
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	CHECK_INT(system(cmd), 0);
}

/*
 * Ownership is exact: many URLs sharing one stem each get their own name,
 * in the run and in the next, and none passes for another.  The first two
 * URLs had equal 31-bit fingerprints under the old registry (found by brute force), which took the
 * second for a duplicate of the first and skipped it unseen.  A key that
 * is a prefix of another's, and one with a torn line before it, too.
 */
static void
test_registry_exact(void)
{
	enum { N = 3000 };
	char dir[] = "/tmp/thumbd-test-name-XXXXXX", err[256], out[NAME_MAX_OUT], url[128], cmd[96], path[128];
	static char first[N][NAME_MAX_OUT];
	int bad = 0, pass;
	names *n = NULL;
	FILE *fp;

	CHECK(mkdtemp(dir) != NULL);
	for (pass = 0; pass < 2; pass++) {
		if (!(n = names_open(dir, err, sizeof err)))
			break;
		for (int i = 0; i < N; i++) {
			if (i == 0)
				snprintf(url, sizeof url, "http://127.0.0.1:18081/img?id=0");
			else if (i == 1)
				snprintf(url, sizeof url, "http://127.0.0.1:18081/img?id=598131696");
			else
				snprintf(url, sizeof url, "http://127.0.0.1:18081/img?id=%d", i * 7919);
			if (names_claim(n, url, "img", out, err, sizeof err) != 0)
				bad++;
			else if (pass == 0)
				snprintf(first[i], sizeof first[i], "%s", out);
			else if (strcmp(first[i], out) != 0)
				bad++;
		}
		/* the same URLs again in this run: every one a duplicate */
		for (int i = 2; i < N; i += 97) {
			snprintf(url, sizeof url, "http://127.0.0.1:18081/img?id=%d", i * 7919);
			bad += names_claim(n, url, "img", out, err, sizeof err) != 1;
		}
		names_close(n);
		n = NULL;
	}
	CHECK_INT(pass, 2);
	CHECK_INT(bad, 0);
	for (int i = 1; i < N; i++)
		bad += strcmp(first[i], first[0]) == 0 || strcmp(first[i], first[i - 1]) == 0;
	CHECK_INT(bad, 0);
	CHECK_STR(first[0], "img");

	/* prefix keys, after a line torn by a crash */
	snprintf(path, sizeof path, "%s/.thumbd-names", dir);
	if ((fp = fopen(path, "a"))) {
		fputs("torn\thttp://h/x", fp);
		fclose(fp);
	}
	n = names_open(dir, err, sizeof err);
	CHECK(n != NULL);
	if (n) {
		CHECK_INT(names_claim(n, "http://h/x", "x", out, err, sizeof err), 0);
		CHECK_STR(out, "x");
		CHECK_INT(names_claim(n, "http://h/x2", "x", out, err, sizeof err), 0);
		CHECK(strcmp(out, "x") != 0);
		CHECK_INT(names_claim(n, "http://h/x", "x", out, err, sizeof err), 1);
		CHECK_INT(names_claim(n, "http://h/", "x", out, err, sizeof err), 0);
		CHECK(strcmp(out, "x") != 0);
		names_close(n);
	}
	n = names_open(dir, err, sizeof err);
	CHECK(n != NULL);
	if (n) {
		CHECK_INT(names_claim(n, "http://h/x", "x", out, err, sizeof err), 0);
		CHECK_STR(out, "x");
		names_close(n);
	}
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	CHECK_INT(system(cmd), 0);
}

int
main(void)
{
	test_stems();
	test_sha256();
	test_registry();
	test_registry_exact();
	return CHECK_DONE();
}
