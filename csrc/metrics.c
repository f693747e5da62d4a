/* metrics.c - AUROC, AUPR-In/Out and FPR@TPR (three conventions) in one pass.
 *
 * Both score sets are copied into 64-bit keys that sort like the doubles they
 * encode (sign bit flipped for positives, all bits flipped for negatives; -0.0
 * is first turned into +0.0 so that equal values have equal keys), sorted with
 * an LSD radix sort (11-bit digits, passes whose digit is constant skipped),
 * then merged from the highest value down.  At each distinct value v the walk
 * knows c1 / c0 = the ID / OOD counts equal to v and TP / FP = the ID / OOD
 * counts >= v (exact integers).  Every metric is a sum over these steps:
 *
 *   AUROC     = sum c0 * (2*TP_above + c1) / (2 n1 n0)        (128-bit integer)
 *   AUPR-In   = sum c1 * TP / (TP + FP) / n1                    (long double sum)
 *   AUPR-Out  = sum c0 * TP' / (TP' + FP') / n0, TP' = n0 - FP_above, FP' = n1 - TP_above
 *   FPR paper : argmin over the walk (up to full ID recall) of |TP/n1 - tpr|
 *               in float64 as the reference code computes it, ties -> the later
 *               (lower) threshold; FP/n0 there.
 *   FPR openood: sklearn roc_curve(OOD positive, -score) with its default
 *               drop_intermediate=True, fpr at the first point with tpr >= tpr.
 *   FPR interp: np.interp(tpr, TPR, FPR) on the ID-positive ROC (from (0, 0)).
 * The float64 expressions (TP/n1, FP/n0, ...) are the ones scikit-learn and the
 * reference code evaluate, so threshold choices agree with them bit for bit.
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep */
#include "metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <omp.h>

#define RADIX_BITS 11
#define RADIX_SIZE (1u << RADIX_BITS)
#define RADIX_PASSES 6 /* 6 * 11 = 66 >= 64 */

static inline uint64_t key_of(double x)
{
    uint64_t u;
    if (x == 0.0) x = 0.0; /* -0.0 -> +0.0 */
    memcpy(&u, &x, sizeof u);
    return (u >> 63) ? ~u : (u | 0x8000000000000000ULL);
}

/* Cancellation: the calling thread (OpenMP thread 0) asks the tick callback
 * after every CHECK_CHUNK elements of work (a few ms), any thread stops when
 * *stop is set. */
#define CHECK_CHUNK ((int64_t)1 << 20)
typedef struct {
    dnm_tick_fn tick;
    void *ctx;
    int stop; /* read and written with __atomic builtins */
} watch;

static int cancelled(watch *w)
{
    if (__atomic_load_n(&w->stop, __ATOMIC_RELAXED)) return 1;
    if (w->tick && omp_get_thread_num() == 0 && w->tick(w->ctx, 0, 0)) {
        __atomic_store_n(&w->stop, 1, __ATOMIC_RELAXED);
        return 1;
    }
    return 0;
}

/* Convert and check one set, counting the radix digits of every pass on the way
 * (hist: RADIX_PASSES * RADIX_SIZE zeroed counters).  Returns the index of the
 * first non-finite value, -1, or -2 when cancelled. */
static int64_t fill_keys(const double *x, int64_t n, uint64_t *keys, size_t *hist, watch *w)
{
    for (int64_t c = 0; c < n; c += CHECK_CHUNK) {
        if (c > 0 && cancelled(w)) return -2;
        const int64_t e = c + CHECK_CHUNK < n ? c + CHECK_CHUNK : n;
        for (int64_t i = c; i < e; i++) {
            double v = x[i];
            if (!isfinite(v)) return i;
            uint64_t k = key_of(v);
            keys[i] = k;
            for (int p = 0; p < RADIX_PASSES; p++)
                hist[(size_t)p * RADIX_SIZE + ((k >> (p * RADIX_BITS)) & (RADIX_SIZE - 1))]++;
        }
    }
    return -1;
}

/* Ascending LSD radix sort of a[0..n) using tmp[0..n) as scratch, given the
 * digit counts of every pass (overwritten).  Returns 0, or -2 when cancelled
 * (a is then left unsorted). */
static int radix_sort(uint64_t *a, uint64_t *tmp, int64_t n, size_t *hist, watch *w)
{
    if (n < 2) return 0;
    uint64_t *src = a, *dst = tmp;
    for (int p = 0; p < RADIX_PASSES; p++) {
        size_t *h = hist + (size_t)p * RADIX_SIZE;
        const int shift = p * RADIX_BITS;
        if (h[(src[0] >> shift) & (RADIX_SIZE - 1)] == (size_t)n) continue; /* constant digit */
        size_t sum = 0;
        for (unsigned b = 0; b < RADIX_SIZE; b++) {
            size_t c = h[b];
            h[b] = sum;
            sum += c;
        }
        for (int64_t c = 0; c < n; c += CHECK_CHUNK) {
            if (cancelled(w)) return -2;
            const int64_t e = c + CHECK_CHUNK < n ? c + CHECK_CHUNK : n;
            for (int64_t i = c; i < e; i++) {
                uint64_t k = src[i];
                dst[h[(k >> shift) & (RADIX_SIZE - 1)]++] = k;
            }
        }
        uint64_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != a) memcpy(a, src, (size_t)n * sizeof *a);
    return 0;
}

int dnm_metrics(const double *id, int64_t n_id, const double *ood, int64_t n_ood, double tpr,
                int nthreads, dnm_tick_fn tick, void *tick_ctx, dnm_metrics_result *out,
                dnm_error *err)
{
    err->code = DNM_OK;
    err->row = -1;
    err->col = -1;
    err->which = -1;
    err->value = 0;
    if (n_id < 1 || n_ood < 1 || !(tpr > 0 && tpr <= 1)) {
        err->code = DNM_EDOMAIN;
        err->value = tpr;
        return DNM_EDOMAIN;
    }
    const int64_t n1 = n_id, n0 = n_ood;
    uint64_t *k1 = malloc((size_t)n1 * sizeof *k1);
    uint64_t *k0 = malloc((size_t)n0 * sizeof *k0);
    uint64_t *tmp = malloc((size_t)(n1 + n0) * sizeof *tmp);
    size_t *hist = calloc(2 * (size_t)RADIX_PASSES * RADIX_SIZE, sizeof *hist);
    if (!k1 || !k0 || !tmp || !hist) {
        free(k1);
        free(k0);
        free(tmp);
        free(hist);
        err->code = DNM_ENOMEM;
        return DNM_ENOMEM;
    }
    size_t *hist1 = hist, *hist0 = hist + (size_t)RADIX_PASSES * RADIX_SIZE;
    int64_t bad1 = -1, bad0 = -1;
    int nt = nthreads >= 2 ? 2 : 1;
    watch w = {tick, tick_ctx, 0};
    int pending = 2; /* sets not yet sorted */
    /* The two sets are independent: convert and sort them side by side (set t on thread
     * t).  Thread 0, the caller, keeps looking for Ctrl-C while the other set finishes. */
#pragma omp parallel num_threads(nt)
    {
        const int me = omp_get_thread_num(), team = omp_get_num_threads();
        for (int set = me; set < 2; set += team) {
            if (set == 0) {
                bad1 = fill_keys(id, n1, k1, hist1, &w);
                if (bad1 == -1 && radix_sort(k1, tmp, n1, hist1, &w)) bad1 = -2;
            } else {
                bad0 = fill_keys(ood, n0, k0, hist0, &w);
                if (bad0 == -1 && radix_sort(k0, tmp + n1, n0, hist0, &w)) bad0 = -2;
            }
            __atomic_sub_fetch(&pending, 1, __ATOMIC_RELEASE);
        }
        if (me == 0) {
            const struct timespec nap = {0, 2000000}; /* 2 ms */
            while (__atomic_load_n(&pending, __ATOMIC_ACQUIRE) > 0 && !cancelled(&w))
                nanosleep(&nap, NULL);
        }
    }
    free(tmp);
    free(hist);
    if (bad1 == -2 || bad0 == -2 || w.stop) {
        free(k1);
        free(k0);
        err->code = DNM_ECANCEL;
        return DNM_ECANCEL;
    }
    if (bad1 >= 0 || bad0 >= 0) {
        free(k1);
        free(k0);
        err->code = DNM_ENONFINITE;
        err->which = bad1 >= 0 ? 0 : 1;
        err->row = bad1 >= 0 ? bad1 : bad0;
        err->value = bad1 >= 0 ? id[bad1] : ood[bad0];
        return err->code;
    }

    const double dn1 = (double)n1, dn0 = (double)n0;
    int64_t i1 = n1 - 1, i0 = n0 - 1;   /* walk down from the highest value */
    int64_t TP = 0, FP = 0;             /* ID / OOD counts >= current value */
    unsigned __int128 auc2 = 0;         /* sum c0 * (2*TP_above + c1) */
    long double ap_in = 0, ap_out = 0;
    int64_t steps = 0;

    /* paper */
    double paper_best = INFINITY;
    int64_t paper_fp = 0;
    int paper_done = 0;
    /* interp: last ROC point with tpr <= target (start: the origin) and the next one */
    double ip_t = 0.0, ip_f = 0.0, ip_tn = 0.0, ip_fn = 0.0;
    int ip_has_next = 0;
    /* openood: points in ascending score order are (TP' = n0 - FP_above, FP' = n1 - TP_above).
     * A point is dropped by drop_intermediate when the next higher distinct value has the
     * same (c1, c0) counts (zero second differences), unless it is the lowest point;
     * the answer is then the top of that run of equal-count values. */
    int64_t prev_c1 = -1, prev_c0 = -1;
    int64_t chain_top_fp = 0;   /* FP' at the top of the current equal-count run */
    int64_t oo_fp_self = -1, oo_fp_chain = -1, oo_step = -1;
    int oo_active = 1;

    int64_t next_check = CHECK_CHUNK; /* elements walked before the next look for Ctrl-C */
    while (i1 >= 0 || i0 >= 0) {
        if ((n1 - 1 - i1) + (n0 - 1 - i0) >= next_check) {
            next_check += CHECK_CHUNK;
            if (cancelled(&w)) {
                free(k1);
                free(k0);
                err->code = DNM_ECANCEL;
                return DNM_ECANCEL;
            }
        }
        uint64_t v;
        if (i1 < 0) v = k0[i0];
        else if (i0 < 0) v = k1[i1];
        else v = k1[i1] > k0[i0] ? k1[i1] : k0[i0];
        int64_t c1 = 0, c0 = 0;
        while (i1 >= 0 && k1[i1] == v) { c1++; i1--; }
        while (i0 >= 0 && k0[i0] == v) { c0++; i0--; }
        const int64_t TPa = TP, FPa = FP; /* strictly above v */
        TP += c1;
        FP += c0;

        auc2 += (unsigned __int128)c0 * (unsigned __int128)(2 * TPa + c1);
        if (c1) ap_in += (long double)((double)c1 * ((double)TP / (double)(TP + FP)));
        const int64_t tpo = n0 - FPa, fpo = n1 - TPa; /* OOD positive: scores <= v */
        if (c0) ap_out += (long double)((double)c0 * ((double)tpo / (double)(tpo + fpo)));

        const double t = (!paper_done || !ip_has_next) ? (double)TP / dn1 : 0.0;
        if (!paper_done) {
            double d = fabs(t - tpr);
            if (d <= paper_best) {
                paper_best = d;
                paper_fp = FP;
            } else if (t > tpr) {
                paper_done = 1; /* t only grows from here, and so does d */
            }
            if (TP == n1) paper_done = 1;
        }

        if (!ip_has_next) {
            if (t <= tpr) {
                ip_t = t;
                ip_f = (double)FP / dn0;
            } else {
                ip_tn = t;
                ip_fn = (double)FP / dn0;
                ip_has_next = 1;
            }
        }

        /* tpo only decreases along the walk: once the condition fails it stays failed */
        if (oo_active) {
            if (c1 != prev_c1 || c0 != prev_c0) chain_top_fp = fpo;
            prev_c1 = c1;
            prev_c0 = c0;
            if ((double)tpo / dn0 >= tpr) {
                oo_fp_self = fpo;
                oo_fp_chain = chain_top_fp;
                oo_step = steps;
            } else {
                oo_active = 0;
            }
        }
        steps++;
    }
    free(k1);
    free(k0);

    out->n_thresholds = steps;
    out->auroc = (double)((long double)auc2 / (2.0L * (long double)n1 * (long double)n0));
    out->aupr_in = (double)(ap_in / (long double)n1);
    out->aupr_out = (double)(ap_out / (long double)n0);
    out->fpr_paper = (double)paper_fp / dn0;
    if (!ip_has_next || ip_t == tpr) {
        out->fpr_interp = ip_f;
    } else {
        double slope = (ip_fn - ip_f) / (ip_tn - ip_t);
        out->fpr_interp = slope * (tpr - ip_t) + ip_f;
    }
    /* The lowest value (last step) is always kept by sklearn; so are all points when
     * there are at most two of them.  tpo at the lowest value is n0 >= tpr*n0, so
     * oo_step >= 0 always. */
    int64_t oo_fp = (oo_step == steps - 1 || steps <= 2) ? oo_fp_self : oo_fp_chain;
    out->fpr_openood = (double)oo_fp / dn1;
    return DNM_OK;
}
