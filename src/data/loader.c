#include "data/loader.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "data/augment.h"
#include "data/mix.h"
#include "util/rng.h"

#define LOADER_RNG_SITE 0x73687566ULL /* "shuf" */
#define LOADER_MAX_THREADS 8

struct loader {
    cifar10_view split;
    loader_config cfg;
    int n;          /* images per epoch */
    int num_batches;
    int *perm;      /* [n] epoch order */
    int epoch;
    int perm_valid, perm_epoch; /* perm holds the order keyed on perm_epoch */
    int sync_inited;            /* mu and the conds exist */

    loader_batch *slots; /* [depth]; batch k lives in slot k % depth */
    int *ready;          /* [depth]: batch index held complete in the slot, -1 if none */
    float *x_all;
    int *y_all, *idx_all;
    int *y2_all;      /* mixing only */
    float *lam_all;   /* mixing only */
    int *perm_all;    /* [depth, B] mixing partners, mixing only */
    float *scratch;   /* [depth, S*S*3]: a slot's worker owns its scratch */
    float *partner_x; /* [depth, S*S*3]: a partner image (mixing with a share) */

    /* Shared with workers, under mu. */
    pthread_mutex_t mu;
    pthread_cond_t work, done;
    int next_claim;  /* next batch a worker may prepare */
    int released;    /* batches the consumer has finished with */
    int cursor;      /* next batch loader_next returns */
    int busy;        /* workers preparing a batch right now */
    int quit;
    pthread_t threads[LOADER_MAX_THREADS];
    int started_threads;
};

void loader_permutation(int *perm, int n, loader_shuffle mode, uint64_t seed, int epoch)
{
    for (int i = 0; i < n; i++) perm[i] = i;
    if (mode == LOADER_SHUFFLE_NONE) return;
    uint64_t key = rng_key(seed, LOADER_RNG_SITE);
    if (mode == LOADER_SHUFFLE_EPOCH) key = rng_key(key, (uint64_t)epoch);
    rng_stream s = {key, 0};
    for (int i = n - 1; i > 0; i--) {
        int j = (int)rng_next_below(&s, (uint32_t)i + 1);
        int t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

/* Image `id` of the split, as the batch feeds it: augmented (training) or
 * resized (evaluation). */
static void augment_one(const loader *l, float *dst, float *scratch, int id)
{
    const uint8_t *px = l->split.pixels + (size_t)id * CIFAR10_PIXELS;
    if (l->cfg.train)
        augment_train_with(dst, scratch, px, l->cfg.image_size, &l->cfg.aug, l->cfg.seed, l->epoch, id);
    else augment_eval(dst, px, l->cfg.image_size);
}

/* Fills the slot of batch k. Reads only perm, split and cfg, which do not
 * change while any worker is busy. */
static void prepare(loader *l, int k)
{
    loader_batch *b = &l->slots[k % l->cfg.depth];
    const int B = l->cfg.batch_size, S = l->cfg.image_size;
    const size_t img = (size_t)S * S * 3;
    const int slot = k % l->cfg.depth;
    float *scratch = l->scratch + (size_t)slot * img;
    int first = k * B, size = l->n - first < B ? l->n - first : B;
    int lo = 0, hi = size;
    if (l->cfg.share_count > 1) {
        lo = (int)((long)size * l->cfg.share_index / l->cfg.share_count);
        hi = (int)((long)size * (l->cfg.share_index + 1) / l->cfg.share_count);
    }
    for (int i = 0; i < size; i++) {
        const int id = l->perm[first + i];
        b->y[i] = l->split.labels[id];
        b->idx[i] = id;
    }
    for (int i = lo; i < hi; i++) augment_one(l, b->x + i * img, scratch, b->idx[i]);
    /* Padding rows of a last partial batch: zeros and label -1, never stale
     * data from an earlier batch (which would depend on timing). */
    if (size < B) {
        memset(b->x + size * img, 0, (size_t)(B - size) * img * sizeof(float));
        for (int i = size; i < B; i++) b->y[i] = b->idx[i] = -1;
    }
    if (b->y2) {
        const uint64_t key = mix_key(l->cfg.seed, l->epoch, k);
        const mix_params mp = mix_draw(key, S, l->cfg.aug.mixup_alpha, l->cfg.aug.cutmix_alpha);
        int *partner = l->perm_all + (size_t)slot * B;
        mix_partners(partner, size, key);
        if (lo == 0 && hi == size) {
            mix_apply(b->x, scratch, partner, size, S, &mp);
        } else if (mp.kind != MIX_NONE && size >= 2) { /* as mix_apply: own with the unmixed partner */
            float *px = l->partner_x + (size_t)slot * img;
            for (int i = lo; i < hi; i++) {
                augment_one(l, px, scratch, b->idx[partner[i]]);
                mix_pair(b->x + i * img, px, S, &mp);
            }
        }
        for (int i = 0; i < size; i++) {
            b->y2[i] = b->y[partner[i]];
            b->lam[i] = mp.lam;
        }
        for (int i = size; i < B; i++) b->y2[i] = -1, b->lam[i] = 1.0f;
    }
    b->size = size;
    b->index = k;
    b->first = lo;
    b->count = hi - lo;
}

/* A worker may prepare batch k once the slot's previous tenant, batch
 * k - depth, has been released. */
static int claimable(const loader *l)
{
    return !l->quit && l->next_claim < l->num_batches && l->next_claim < l->released + l->cfg.depth;
}

static void *worker(void *arg)
{
    loader *l = arg;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->quit && !claimable(l)) pthread_cond_wait(&l->work, &l->mu);
        if (l->quit) break;
        int k = l->next_claim++;
        l->busy++;
        pthread_mutex_unlock(&l->mu);
        prepare(l, k);
        pthread_mutex_lock(&l->mu);
        l->busy--;
        l->ready[k % l->cfg.depth] = k;
        pthread_cond_broadcast(&l->done);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

int loader_create(loader **out, const cifar10_view *split, const loader_config *cfg, tlb_error *err)
{
    *out = NULL;
    if (cfg->batch_size < 1) return tlb_fail(err, "loader: batch_size %d, expected >= 1", cfg->batch_size);
    if (cfg->image_size < 1) return tlb_fail(err, "loader: image_size %d, expected >= 1", cfg->image_size);
    if (cfg->num_threads < 0 || cfg->num_threads > LOADER_MAX_THREADS)
        return tlb_fail(err, "loader: num_threads %d, expected 0..%d", cfg->num_threads, LOADER_MAX_THREADS);
    if (cfg->depth < 2 && cfg->num_threads > 0)
        return tlb_fail(err, "loader: depth %d, expected >= 2 with worker threads", cfg->depth);
    if (cfg->limit < 0) return tlb_fail(err, "loader: limit %d, expected >= 0", cfg->limit);
    const augment_options *a = &cfg->aug;
    if (a->randaugment_n < 0 || a->randaugment_n > 16 || a->randaugment_m < 0 || a->randaugment_m > 30)
        return tlb_fail(err, "loader: randaugment n %d m %d, expected 0..16 and 0..30", a->randaugment_n,
                        a->randaugment_m);
    if (!(a->random_erase >= 0 && a->random_erase <= 1))
        return tlb_fail(err, "loader: random_erase %g, expected 0..1", a->random_erase);
    if (!(a->mixup_alpha >= 0) || !(a->cutmix_alpha >= 0))
        return tlb_fail(err, "loader: mixup/cutmix alpha %g/%g, expected >= 0", a->mixup_alpha, a->cutmix_alpha);
    if (cfg->share_count < 0 || (cfg->share_count > 0 && (cfg->share_index < 0 || cfg->share_index >= cfg->share_count)))
        return tlb_fail(err, "loader: share %d of %d, expected 0 <= index < count", cfg->share_index, cfg->share_count);
    int n = cfg->limit > 0 && cfg->limit < split->count ? cfg->limit : split->count;
    if (n < 1) return tlb_fail(err, "loader: the split is empty");

    loader *l = calloc(1, sizeof *l);
    if (!l) return tlb_fail(err, "loader: out of memory");
    l->split = *split;
    l->cfg = *cfg;
    if (l->cfg.depth < 1) l->cfg.depth = 1;
    l->n = n;
    l->num_batches = cfg->drop_last ? n / cfg->batch_size : (n + cfg->batch_size - 1) / cfg->batch_size;
    const int D = l->cfg.depth, B = cfg->batch_size;
    const size_t img = (size_t)cfg->image_size * cfg->image_size * 3;
    l->perm = malloc((size_t)n * sizeof *l->perm);
    l->slots = calloc((size_t)D, sizeof *l->slots);
    l->ready = malloc((size_t)D * sizeof *l->ready);
    /* calloc: pages of rows outside a share are never touched, never committed */
    l->x_all = calloc((size_t)D * B * img, sizeof(float));
    l->y_all = malloc((size_t)D * B * sizeof(int));
    l->idx_all = malloc((size_t)D * B * sizeof(int));
    l->scratch = malloc((size_t)D * img * sizeof(float));
    const int mixing = cfg->train && augment_mixes(&cfg->aug);
    if (mixing) {
        l->y2_all = malloc((size_t)D * B * sizeof(int));
        l->lam_all = malloc((size_t)D * B * sizeof(float));
        l->perm_all = malloc((size_t)D * B * sizeof(int));
        l->partner_x = malloc((size_t)D * img * sizeof(float));
    }
    if (!l->perm || !l->slots || !l->ready || !l->x_all || !l->y_all || !l->idx_all || !l->scratch ||
        (mixing && (!l->y2_all || !l->lam_all || !l->perm_all || !l->partner_x))) {
        loader_destroy(l);
        return tlb_fail(err, "loader: out of memory for %d slots of %d images of %dx%dx3", D, B, cfg->image_size,
                        cfg->image_size);
    }
    for (int s = 0; s < D; s++) {
        l->slots[s].x = l->x_all + (size_t)s * B * img;
        l->slots[s].y = l->y_all + (size_t)s * B;
        l->slots[s].idx = l->idx_all + (size_t)s * B;
        if (mixing) {
            l->slots[s].y2 = l->y2_all + (size_t)s * B;
            l->slots[s].lam = l->lam_all + (size_t)s * B;
        }
        l->ready[s] = -1;
    }
    /* No epoch started yet: nothing is claimable until loader_start_epoch. */
    l->next_claim = l->num_batches;
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->work, NULL);
    pthread_cond_init(&l->done, NULL);
    l->sync_inited = 1;
    for (int t = 0; t < cfg->num_threads; t++) {
        if (pthread_create(&l->threads[t], NULL, worker, l) != 0) {
            loader_destroy(l);
            return tlb_fail(err, "loader: cannot start worker thread %d", t);
        }
        l->started_threads++;
    }
    *out = l;
    return 0;
}

int loader_num_batches(const loader *l) { return l->num_batches; }
int loader_num_images(const loader *l) { return l->n; }
size_t loader_sample_floats(const loader *l) { return (size_t)l->cfg.image_size * l->cfg.image_size * 3; }

void loader_start_epoch_at(loader *l, int epoch, int first_batch)
{
    pthread_mutex_lock(&l->mu);
    /* Stop new claims and let in-flight batches finish: workers read perm
     * and epoch without the lock. */
    l->next_claim = l->num_batches;
    while (l->busy > 0) pthread_cond_wait(&l->done, &l->mu);
    l->epoch = epoch;
    /* SHUFFLE_ONCE and NONE orders do not depend on the epoch: build once. */
    int key_epoch = l->cfg.shuffle == LOADER_SHUFFLE_EPOCH ? epoch : 0;
    if (!l->perm_valid || l->perm_epoch != key_epoch) {
        loader_permutation(l->perm, l->n, l->cfg.shuffle, l->cfg.seed, epoch);
        l->perm_valid = 1;
        l->perm_epoch = key_epoch;
    }
    if (first_batch < 0) first_batch = 0;
    if (first_batch > l->num_batches) first_batch = l->num_batches;
    for (int s = 0; s < l->cfg.depth; s++) l->ready[s] = -1;
    l->next_claim = l->released = l->cursor = first_batch;
    pthread_cond_broadcast(&l->work);
    pthread_mutex_unlock(&l->mu);
}

const loader_batch *loader_next(loader *l)
{
    pthread_mutex_lock(&l->mu);
    /* The batch returned last time is done with: free its slot. */
    if (l->released < l->cursor) {
        l->released = l->cursor;
        pthread_cond_broadcast(&l->work);
    }
    int k = l->cursor;
    if (k >= l->num_batches) {
        pthread_mutex_unlock(&l->mu);
        return NULL;
    }
    int s = k % l->cfg.depth;
    if (l->cfg.num_threads == 0) {
        pthread_mutex_unlock(&l->mu);
        prepare(l, k);
        pthread_mutex_lock(&l->mu);
        l->ready[s] = k;
    }
    while (l->ready[s] != k) pthread_cond_wait(&l->done, &l->mu);
    l->cursor = k + 1;
    pthread_mutex_unlock(&l->mu);
    return &l->slots[s];
}

void loader_destroy(loader *l)
{
    if (!l) return;
    if (l->started_threads > 0) {
        pthread_mutex_lock(&l->mu);
        l->quit = 1;
        pthread_cond_broadcast(&l->work);
        pthread_mutex_unlock(&l->mu);
        for (int t = 0; t < l->started_threads; t++) pthread_join(l->threads[t], NULL);
    }
    if (l->sync_inited) {
        pthread_mutex_destroy(&l->mu);
        pthread_cond_destroy(&l->work);
        pthread_cond_destroy(&l->done);
    }
    free(l->perm);
    free(l->slots);
    free(l->ready);
    free(l->x_all);
    free(l->y_all);
    free(l->idx_all);
    free(l->y2_all);
    free(l->lam_all);
    free(l->perm_all);
    free(l->scratch);
    free(l->partner_x);
    free(l);
}
