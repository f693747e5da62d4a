/* mining.h - negative-label mining kernels (docs/design.md, "Mining").
 *
 * dnm_knn_log_distance: DNM's kNN log-distance density on raw embeddings,
 *   d_ij = r_i + r_j - 2 cos_ij (all j, j = i included),
 *   rho_i = mean of log d_ij over the k+1 smallest d_ij of row i.
 *   Streams the symmetric N x N product in T x T tiles, on dnm's own kernel
 *   (mining_simd.h) for float input on CPUs with AVX2 or AVX-512 (`kernel`,
 *   as in score.h), else through GEMM (only
 *   tiles on or above the diagonal are computed; each off-diagonal tile feeds
 *   the neighbour lists of both its row tile and its column tile, under one
 *   lock per row tile taken in index order).  Per row: a threshold and a
 *   buffer of at most 2(k+1) distances, cut back to the k+1 smallest by
 *   quickselect when full; one vectorised pass per tile row flags the
 *   distances below a threshold.  The raw rows are multiplied as they are
 *   when their layout allows (cos_ij = s_ij / (r_i r_j)), else a converted
 *   copy is made.  Memory: N x 2(k+1) doubles, one T x T tile per thread,
 *   and the copy (N x D) only when needed; never N x N.
 *
 * dnm_neglabel_closeness: NegLabel's eta-quantile (NumPy's "linear" method)
 *   of each normalised candidate's cosines to the normalised ID labels, with
 *   the optional CSP rule (use the maximum where it exceeds max_cut).
 *
 * Both compute in double (DGEMM) when an input is float64, else in float
 * (dnm's kernel or SGEMM) with distances / order statistics evaluated in
 * double.  Tile sizes
 * do not depend on the thread count and every per-row result depends only on
 * the (deterministic) tile products, so results are bitwise independent of
 * the number of threads.
 */
#ifndef DNM_MINING_H
#define DNM_MINING_H
#include "common.h"

/* DNM_EDOMAIN details from dnm_knn_log_distance, in err->col:
 *   DNM_KNN_UNIT_NORM: every row norm lies within DNM_KNN_UNIT_TOL of 1
 *                      (input looks L2-normalised); err->value = max |r - 1|.
 *   DNM_KNN_NORM_LE1:  row err->row has norm err->value <= 1, so
 *                      d_ii = 2 r_i - 2 <= 0.
 *   DNM_KNN_DIST_LE0:  row err->row has a distance err->value <= 0 among its
 *                      k+1 smallest (i.e. its smallest distance is <= 0).
 *   DNM_KNN_DIST_INF:  row err->row has only err->value finite distances (fewer
 *                      than k+1): r_i + r_j overflows float64 (norms near DBL_MAX). */
enum { DNM_KNN_UNIT_NORM = -2, DNM_KNN_NORM_LE1 = -3, DNM_KNN_DIST_LE0 = -4,
       DNM_KNN_DIST_INF = -5 };
#define DNM_KNN_UNIT_TOL 1e-3

int dnm_knn_log_distance(const dnm_matrix *x, int64_t k, double *rho, int kernel, int nthreads,
                         dnm_tick_fn tick, void *tick_ctx, dnm_error *err);

/* The same for the rows [row_start, row_stop) only (0 <= row_start < row_stop
 * <= N): rho[0 .. row_stop - row_start) against all N rows, bitwise equal to
 * the corresponding slice of the full run for any range.  The norms, their
 * guards (unit norm, norm <= 1, NaN/Inf, zero rows) and the float "normalised
 * copy" decision are still taken over all N rows, so the same inputs are
 * refused; DNM_KNN_DIST_LE0 is checked on the range's rows.  Each row tile I
 * meeting the range is multiplied by every column tile J with the full run's
 * GEMM for that pair ((I, J) for J >= I, (J, I) for J < I) and only the
 * range's rows are fed: about (row_stop - row_start) N D multiply-adds,
 * rounded up to whole tiles of DNM_KNN_TILE rows (an unaligned range computes
 * the whole tiles it touches).  Memory: (row_stop - row_start) x 2(k+1)
 * doubles, the N norms, one tile per thread (and the converted copy, if the
 * input needs one, of all N rows). */
int dnm_knn_log_distance_rows(const dnm_matrix *x, int64_t k, int64_t row_start,
                              int64_t row_stop, double *rho, int kernel, int nthreads,
                              dnm_tick_fn tick, void *tick_ctx, dnm_error *err);

/* DNM_KNN_TILE: rows (and columns) per tile of the kNN product. */
extern const int dnm_knn_tile;

/* id (C, D), cand (N, D); percentile in [0, 1]; max_cut: NaN for none.
 * Writes out[N]. */
int dnm_neglabel_closeness(const dnm_matrix *id, const dnm_matrix *cand, double percentile,
                           double max_cut, double *out, int kernel, int nthreads,
                           dnm_tick_fn tick, void *tick_ctx, dnm_error *err);

/* Square tile of the kNN product (rows x columns), a multiple of every
 * kernel's image panel (32).  Independent of the thread count by design. */
#ifndef DNM_KNN_TILE
#define DNM_KNN_TILE 512
#endif

/* Internal: the float mining kernels on dnm's own product kernel
 * (mining_simd.h, built per instruction set in score_avx512.c / score_avx2.c).
 * dnm_knn_f_ISA runs steps 3-4 of the kNN (the products and the k+1 buffers:
 * heap, hsize, thr of the rows [lo, hi)) on norms r and inverse norms inv
 * already checked; dnm_closeness_f_ISA the whole closeness kernel. */
#define DNM_DECLARE_MINING_SIMD(ISA)                                                         \
    int dnm_knn_f_##ISA(const dnm_matrix *x, int normalize, const double *r,               \
                        const double *inv, int64_t K1, int64_t lo, int64_t hi, double *heap, \
                        int32_t *hsize, double *thr, int nt, dnm_tick_fn tick,              \
                        void *tick_ctx, dnm_error *err);                                    \
    int dnm_closeness_f_##ISA(const dnm_matrix *id, const dnm_matrix *cand, int at_max,     \
                              int use_cut, double cut, int64_t next, double gamma,          \
                              double *out, int nt, dnm_tick_fn tick, void *tick_ctx,        \
                              dnm_error *err);
DNM_DECLARE_MINING_SIMD(avx512)
DNM_DECLARE_MINING_SIMD(avx2)
#define DNM_DEFINE_MINING_STUBS(ISA)                                                         \
    int dnm_knn_f_##ISA(const dnm_matrix *x, int normalize, const double *r,               \
                        const double *inv, int64_t K1, int64_t lo, int64_t hi, double *heap, \
                        int32_t *hsize, double *thr, int nt, dnm_tick_fn tick,              \
                        void *tick_ctx, dnm_error *err)                                     \
    {                                                                                        \
        (void)x, (void)normalize, (void)r, (void)inv, (void)K1, (void)lo, (void)hi;          \
        (void)heap, (void)hsize, (void)thr, (void)nt, (void)tick, (void)tick_ctx;           \
        err->code = DNM_EDOMAIN;                                                             \
        return DNM_EDOMAIN;                                                                  \
    }                                                                                        \
    int dnm_closeness_f_##ISA(const dnm_matrix *id, const dnm_matrix *cand, int at_max,     \
                              int use_cut, double cut, int64_t next, double gamma,          \
                              double *out, int nt, dnm_tick_fn tick, void *tick_ctx,        \
                              dnm_error *err)                                               \
    {                                                                                        \
        (void)id, (void)cand, (void)at_max, (void)use_cut, (void)cut, (void)next;            \
        (void)gamma, (void)out, (void)nt, (void)tick, (void)tick_ctx;                        \
        err->code = DNM_EDOMAIN;                                                             \
        return DNM_EDOMAIN;                                                                  \
    }

#endif
