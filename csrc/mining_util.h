/* mining_util.h - pieces shared by the BLAS-tile mining kernels (mining.c) and
 * the ones on dnm's own product kernel (mining_simd.h): the bounded buffer of
 * the k+1 smallest distances of a row, small sorts, and NumPy's "linear"
 * quantile of one row of cosines.  Header-only (static inline), no state. */
#ifndef DNM_MINING_UTIL_H
#define DNM_MINING_UTIL_H
#include <math.h>
#include <stdint.h>

static inline void sift_down(double *h, int64_t i, int64_t n)
{
    double v = h[i];
    for (;;) {
        int64_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && h[c + 1] > h[c]) c++;
        if (h[c] <= v) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = v;
}

/* In-place heapsort of a max-heap of n values: ascending order. */
static inline void heap_to_sorted(double *h, int64_t n)
{
    for (int64_t end = n - 1; end > 0; end--) {
        double t = h[0];
        h[0] = h[end];
        h[end] = t;
        sift_down(h, 0, end);
    }
}

/* ---- selection: a[kth] becomes the kth smallest, a[0..kth) <= a[kth] ---- */
static inline void nth_element(double *a, int64_t n, int64_t kth)
{
    int64_t lo = 0, hi = n - 1;
    while (hi > lo) {
        int64_t mid = lo + (hi - lo) / 2;
        double t;
        if (a[mid] < a[lo]) { t = a[mid]; a[mid] = a[lo]; a[lo] = t; }
        if (a[hi] < a[lo]) { t = a[hi]; a[hi] = a[lo]; a[lo] = t; }
        if (a[hi] < a[mid]) { t = a[hi]; a[hi] = a[mid]; a[mid] = t; }
        const double pv = a[mid];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (a[i] < pv) i++;
            while (a[j] > pv) j--;
            if (i <= j) {
                t = a[i]; a[i] = a[j]; a[j] = t;
                i++;
                j--;
            }
        }
        if (kth <= j) hi = j;
        else if (kth >= i) lo = i;
        else return;
    }
}

/* ---- the k+1 smallest distances of a row: a threshold and a buffer ----
 * Each row keeps up to 2 K1 values in h (count *n) and a threshold *thr:
 * +inf until the buffer first fills, then the K1-th smallest value seen so
 * far.  Values d < *thr are appended (O(1)); a full buffer is cut back to its
 * K1 smallest with a quickselect (O(K1) per K1 appends).  Values equal to the
 * threshold are not needed: they cannot change the multiset of the K1
 * smallest values, which is all the mean of logs depends on. */
static inline void buf_offer(double *h, int32_t *n, int64_t K1, double d, double *thr)
{
    int64_t c = *n;
    h[c++] = d;
    if (c == 2 * K1) {
        nth_element(h, c, K1 - 1);
        *thr = h[K1 - 1];
        c = K1;
    }
    *n = (int32_t)c;
}

/* Ascending in-place heapsort of h[0..n). */
static inline void sort_small(double *h, int64_t n)
{
    for (int64_t i = n / 2 - 1; i >= 0; i--) sift_down(h, i, n);
    heap_to_sorted(h, n);
}

/* NumPy's linear interpolation (_lerp), bit for bit. */
static inline double np_lerp(double a, double b, double t)
{
    double diff = b - a;
    return t >= 0.5 ? b - diff * (1.0 - t) : a + diff * t;
}

#define DNM_QBINS 256 /* histogram bins of dnm_row_quantile */

/* The quantile NumPy's quantile(..., method="linear") gives at virtual index
 * prev + gamma of the n ascending values w (at_max: the maximum), or the
 * maximum when use_cut and it exceeds cut (the CSP rule).  Reorders w. */
static inline double dnm_row_quantile(double *w, int64_t n, int at_max, int use_cut, double cut,
                                      int64_t next, double gamma)
{
    double mx = -INFINITY, mn = INFINITY;
    for (int64_t j = 0; j < n; j++) {
        mx = w[j] > mx ? w[j] : mx;
        mn = w[j] < mn ? w[j] : mn;
    }
    if (at_max || (use_cut && mx > cut)) return mx;
    const double scale = (double)DNM_QBINS / (mx - mn);
    if (n >= 64 && next > 0 && mx - mn > 0 && mx - mn < INFINITY && scale < 1e300) {
        /* A histogram of the values over [mn, mx] finds the bins holding the values at
         * ascending positions next - 1 and next; the bin of a value never decreases with
         * the value, so every value of a lower bin is below every value of those bins and
         * the two values are those of a selection among the few values of those bins
         * only: the same bits as the selection over all n below, at a few passes over w
         * instead of a quickselect's mispredicted branches. */
        int32_t cnt[DNM_QBINS] = {0};
        for (int64_t j = 0; j < n; j++) {
            int64_t b = (int64_t)((w[j] - mn) * scale);
            cnt[b < DNM_QBINS ? b : DNM_QBINS - 1]++;
        }
        int64_t below = 0, b1 = 0, b2;
        while (below + cnt[b1] <= next - 1) below += cnt[b1++];
        int64_t upto = below + cnt[b1];
        for (b2 = b1; upto <= next;) upto += cnt[++b2];
        int64_t c = 0;
        for (int64_t j = 0; j < n; j++) {
            int64_t b = (int64_t)((w[j] - mn) * scale);
            b = b < DNM_QBINS ? b : DNM_QBINS - 1;
            const double v = w[j];
            w[c] = v; /* c <= j: w[j] is read already */
            c += b >= b1 && b <= b2;
        }
        const int64_t k = next - below;
        nth_element(w, c, k);
        double lo = -INFINITY;
        for (int64_t j = 0; j < k; j++) lo = w[j] > lo ? w[j] : lo;
        return np_lerp(lo, w[k], gamma);
    }
    nth_element(w, n, next);
    double lo = -INFINITY;
    for (int64_t j = 0; j < next; j++) lo = w[j] > lo ? w[j] : lo;
    return np_lerp(lo, w[next], gamma);
}

#endif
