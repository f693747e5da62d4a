/* tta.h - kernels of the test-time adaptive scores (AdaNeg, TANL). */
#ifndef DNM_TTA_H
#define DNM_TTA_H
#include "common.h"

typedef struct {
    double temperature;
    int64_t n_id;          /* columns [0, n_id) are the ID labels */
    int64_t groups;        /* G (0: no group sums) */
    int64_t group_size;    /* Q */
    const int64_t *index;  /* G * Q columns, relative to n_id: group g = index[g*Q .. g*Q+Q) */
    const float *packed;   /* NULL, or these labels packed by dnm_softmax_pack for ... */
    int packed_kernel;     /* ... this resolved kernel (dnm's own kernel only) */
    int packed_rows;       /* rows[i * L + q] = P at packed position q ([ID; groups; rest],
                              as dnm_softmax_pack orders them), dnm's own kernel only */
    const int64_t *sel;    /* with rows: sel_out[i * n_sel + k] = P_ij at the rows' column */
    int64_t n_sel;         /* j = sel[k] (the value the scaled rows hold, also with scales: */
    double *sel_out;       /* the same product), taken while the row is in cache */
    const int64_t *sel_pairs; /* internal: (sel[k], k) in column order */
    int rows_f32;          /* with scales, no groups, on dnm's own kernel only: `rows` is a
                              float (N, L) buffer, each unscaled value rounded to nearest float
                              (exact for the float exps; a lane that took the double exp, below
                              e^-80 of its block's largest value, is rounded: subnormal below
                              2^-126 of it, 0 below 2^-149); the consumers read it with f32 */
} dnm_tta_params;

/* Softmax rows: for every image i (rows of `images`, L2-normalised while
 * packed) and every label j (rows of `labels`, used as given: the caller
 * normalises them), z_ij = <x_i, l_j> / T and
 *     P_ij = exp(z_ij - max_j z_ij) / sum_j exp(z_ij - max_j z_ij)
 * in double (the products in float when labels are float32, in double when
 * they are float64; labels must be C-contiguous).  Outputs, each optional
 * (NULL): rows[i * L + j] = P_ij; id_mass[i] = sum_{j < n_id} P_ij;
 * group_mass[i * G + g] = sum over group g of P_{i, n_id + index[.]}.
 *
 * `kernel` (DNM_KERNEL_*, score.h) chooses the float32 kernel.  On dnm's own
 * kernel (tta_simd.h, AVX2 or AVX-512; float32 labels, and group columns that
 * are all distinct when rows is NULL) every logit is one FMA chain over k in order and each row's
 * epilogue depends on that row only: a row's outputs are bitwise the same in
 * any batch, with any thread count, in both builds, and the masses are the same
 * with and without the rows (the exps in float, the double exp where float's
 * would underflow, the sums in double).  Memory: the outputs, the
 * packed image tile and, per tile, (G + 3) doubles per image and label block.
 * Otherwise (float64, the BLAS kernel, CPUs without AVX2) the logits are
 * single-threaded GEMM tiles of DNM_TTA_IT images on a fixed grid (one tile
 * per task, all labels in chunks of DNM_TTA_LT), the epilogue a fixed sequence
 * per row (exp by one polynomial with correctly rounded fma, sums in 8 fixed
 * lanes): the result does not depend on the thread count.  Memory: the outputs
 * plus, per thread, one tile of logits (DNM_TTA_IT x L doubles when rows is
 * NULL).  The two kernels agree to float32 rounding.  NaN/Inf or zero image
 * rows are errors (which = 0); a kernel the CPU cannot run is DNM_EDOMAIN. */
int dnm_softmax_rows(const dnm_matrix *images, const dnm_matrix *labels, const dnm_tta_params *p,
                     void *rows, double *id_mass, double *group_mass, double *scales,
                     int kernel, int nthreads, dnm_tick_fn tick, void *tick_ctx, dnm_error *err);

/* With `scales` (rows wanted, no groups), the rows are left unscaled and stored in
 * panels of mr = dnm_softmax_panel(labels, kernel) images (the kernel's MR on dnm's own
 * kernel, where each block's values go from the epilogue to their place untransposed;
 * 1, i.e. row-major, on the BLAS tiles):
 *     P_ij = rows[((i / mr) * L + j) * mr + i % mr] * scales[i * nb + j / lb],
 * with lb = dnm_softmax_block(...) labels per block and nb = ceil(L / lb) (the same
 * product, rounded once, that the scaled rows hold); the buffer holds ceil(N / mr) * mr
 * rows (the padding rows' values are unspecified).  The consumers below apply the scales
 * while they read, which saves a pass over the (N, L) rows. */
int64_t dnm_softmax_block(const dnm_matrix *labels, int kernel);
int64_t dnm_softmax_panel(const dnm_matrix *labels, int kernel);

/* The labels packed once for dnm's own kernel (p->packed): the floats
 * dnm_softmax_pack writes for these labels, groups and kernel, or 0 when the
 * kernel that runs does not use packed labels (BLAS tiles, float64, group
 * columns used twice).  dnm_softmax_pack packs them ([ID; groups; rest] in panels
 * of NR labels, as each call would pack its blocks), or, with rows, rewrites in
 * place only the n label rows rows[0..n) of `labels` (the others unchanged since).
 * The caller keeps `labels` and the packed copy in step and passes the resolved
 * kernel with them. */
int64_t dnm_softmax_packed_size(const dnm_matrix *labels, const dnm_tta_params *p, int kernel);
int dnm_softmax_pack(const dnm_matrix *labels, const dnm_tta_params *p, int kernel, float *packed,
                     const int64_t *rows, int64_t n, dnm_error *err);

/* The labels per block of dnm's own kernel for dimension D (a multiple of 42). */
static inline int64_t dnm_tta_lb(int64_t D)
{
    int64_t lb = (int64_t)(1 << 20) / (D * (int64_t)sizeof(float)) / 42 * 42;
    return lb < 42 ? 42 : lb > 882 ? 882 : lb;
}

/* Consumers of the unscaled rows (P as above, in panels of mr rows; columns off .. L).
 *  - gather: out[i * n + k] = P[i, off + sel[k]], rows i < N.
 *  - masked_means: for the rows with flag[i] == 1 (== 2), the mean over them of
 *    P[i, off .. L) into mean1 (mean2), the rows added in order (as NumPy's
 *    add.reduce over axis 0) and the sum divided by their count; untouched when
 *    there are none.
 *  - copy_rows: for each job, row dst_row[k] of its dst ((L - off) columns; float32 when f32,
 *    each value the double product rounded to nearest float (the C cast, NumPy's astype);
 *    else float64) = P[src[k], off .. L); the jobs in one pass over the rows' columns.
 * rows are double, or float with rows_f32 (p->rows_f32 above; each value converted to double
 * exactly, then as with double rows).
 * Threads over rows (gather) or columns: the bits do not depend on the thread count. */
void dnm_tta_gather(const void *rows, int rows_f32, int64_t mr, const double *scales, int64_t N,
                    int64_t L, int64_t lb, int64_t off, const int64_t *sel, int64_t n,
                    double *out, int nthreads);
void dnm_tta_masked_means(const void *rows, int rows_f32, int64_t mr, const double *scales,
                          int64_t N, int64_t L, int64_t lb, int64_t off,
                          const unsigned char *flag, double *mean1, double *mean2, int nthreads);
/* one copy job of dnm_tta_copy_rows: rows src[0..n) to rows dst_row[0..n) (distinct) of dst
 * (float32 when f32, else float64); order is internal */
typedef struct {
    const int64_t *src;
    const int64_t *dst_row;
    int64_t n;
    void *dst;
    int f32;
    const int64_t *order;
} dnm_tta_copy;
void dnm_tta_copy_rows(const void *rows, int rows_f32, int64_t mr, const double *scales,
                       int64_t L, int64_t lb, int64_t off, dnm_tta_copy *jobs, int njobs,
                       int nthreads);
/* TANL's activation-aware score from softmax shares: out[i] = the mean over k = 1..m of
 * A / (A + sum_{q < P_k} v[i * n + q]), A = a_id[i], P_k = min(k step, n), m = ceil(beta /
 * step); step 0: m = 1, P_1 = n.  The prefix sums run in double in selection order (NumPy's
 * cumsum), the m terms are added in 8 fixed lanes.  Threads over rows. */
void dnm_tta_aas(const double *a_id, const double *vals, int64_t N, int64_t n, int64_t beta,
                 int64_t step, double *out, int nthreads);
/* AdaNeg's cached images: for rows ridx[0..n) of `rows` (L columns), the segment of len
 * values v_k = row[off + k] (or row[off + pos[k]]: the segment in its own order from rows in
 * another order).  label[i] = the first k of the largest v_k; with H, H[i] = -sum_k p_k
 * log(p_k + 1e-8), p_k = v_k (1 / mass) (mass[i], or NULL: the segment's sum), the log by a
 * polynomial with correctly rounded fma (about 1 ulp; the same bits on every CPU), the sums in
 * 8 fixed lanes.  Threads over rows.  Returns DNM_OK or DNM_ENOMEM. */
int dnm_tta_cached(const double *rows, int64_t L, int64_t off, int64_t len, const int64_t *pos,
                   const int64_t *ridx, int64_t n, const double *mass, int64_t *label, double *H,
                   int nthreads);

/* out[j] = (sum_{i < n} a[i * K + j], rows added in order in double) / n, as NumPy's mean
 * over axis 0 of the C-contiguous (n, K) matrix a (float32 when f32, converted to float64;
 * else float64).  With ckpt
 * (every > 0): ckpt[c * K + j] holds the running sum (double) after rows [0, (c + 1) every);
 * the first `valid` of them are taken as they are (rows before valid * every unchanged since
 * they were stored), the sum goes on from there, and the checkpoints it passes are stored:
 * the same bits as summing from 0. */
void dnm_rows_mean(const void *a, int f32, int64_t n, int64_t K, double *out, double *ckpt,
                   int64_t every, int64_t valid, int nthreads);

/* Internal: the consumers' loops over float rows in panels (mr a multiple of 8) on AVX2
 * (tta_simd.h, built in score_avx2.c): the masked means' sums and the row copies of the
 * columns [j0, j1) relative to off, up to the last full group of 8 columns (returned; the
 * caller does the rest), with the plain loops' operations in their order (the same bits).
 * panel_sums zeroes a1 / a2 [0, j1 - j0); panel_copy takes the k in src order (`order`) and
 * distinct dst rows. */
int64_t dnm_tta_panel_sums_avx2(const float *rows, int64_t mr, const double *scales, int64_t N,
                                int64_t L, int64_t lb, int64_t off, const unsigned char *flag,
                                int64_t j0, int64_t j1, double *a1, double *a2);
int64_t dnm_tta_panel_copy_avx2(const float *rows, int64_t mr, const double *scales, int64_t L,
                                int64_t lb, int64_t off, const int64_t *src,
                                const int64_t *dst_row, int64_t n, void *dst, int f32,
                                int64_t j0, int64_t j1, const int64_t *order);
#define DNM_DEFINE_TTA_PANEL_STUBS                                                           \
    int64_t dnm_tta_panel_sums_avx2(const float *rows, int64_t mr, const double *scales,    \
                                    int64_t N, int64_t L, int64_t lb, int64_t off,          \
                                    const unsigned char *flag, int64_t j0, int64_t j1,      \
                                    double *a1, double *a2)                                 \
    {                                                                                        \
        (void)rows, (void)mr, (void)scales, (void)N, (void)L, (void)lb, (void)off;          \
        (void)flag, (void)j1, (void)a1, (void)a2;                                           \
        return j0;                                                                           \
    }                                                                                        \
    int64_t dnm_tta_panel_copy_avx2(const float *rows, int64_t mr, const double *scales,    \
                                    int64_t L, int64_t lb, int64_t off, const int64_t *src, \
                                    const int64_t *dst_row, int64_t n, void *dst, int f32,  \
                                    int64_t j0, int64_t j1, const int64_t *order)           \
    {                                                                                        \
        (void)rows, (void)mr, (void)scales, (void)L, (void)lb, (void)off, (void)src;        \
        (void)dst_row, (void)n, (void)dst, (void)f32, (void)j1, (void)order;                \
        return j0;                                                                           \
    }

/* Internal: the float32 kernel on dnm's own product kernel (tta_simd.h, built
 * per instruction set in score_avx512.c / score_avx2.c).  col[p] = the label
 * row at packed position p ([ID; groups in order; the rest]), NULL for the
 * identity; nt threads already resolved. */
#define DNM_DECLARE_TTA_SIMD(ISA)                                                            \
    int dnm_softmax_rows_f_##ISA(const dnm_matrix *images, const dnm_matrix *labels,        \
                                 const dnm_tta_params *p, const int64_t *col, void *rows,   \
                                 double *id_mass, double *group_mass, double *scales,      \
                                 int nt, dnm_tick_fn tick, void *tick_ctx, dnm_error *err);
#define DNM_DECLARE_TTA_PACK(ISA)                                                            \
    int64_t dnm_softmax_packed_floats_##ISA(int64_t L, int64_t D);                          \
    int64_t dnm_softmax_mr_##ISA(void);                                                     \
    void dnm_softmax_pack_f_##ISA(const float *lab, int64_t L, int64_t D, const int64_t *col, \
                                  const int64_t *pos, const int64_t *rows, int64_t n,        \
                                  float *packed);
DNM_DECLARE_TTA_SIMD(avx512)
DNM_DECLARE_TTA_SIMD(avx2)
DNM_DECLARE_TTA_PACK(avx512)
DNM_DECLARE_TTA_PACK(avx2)
#define DNM_DEFINE_TTA_STUBS(ISA)                                                            \
    int dnm_softmax_rows_f_##ISA(const dnm_matrix *images, const dnm_matrix *labels,        \
                                 const dnm_tta_params *p, const int64_t *col, void *rows,   \
                                 double *id_mass, double *group_mass, double *scales,      \
                                 int nt, dnm_tick_fn tick, void *tick_ctx, dnm_error *err) \
    {                                                                                        \
        (void)images, (void)labels, (void)p, (void)col, (void)rows, (void)id_mass;          \
        (void)group_mass, (void)scales, (void)nt, (void)tick, (void)tick_ctx;               \
        err->code = DNM_EDOMAIN;                                                             \
        return DNM_EDOMAIN;                                                                  \
    }                                                                                        \
    int64_t dnm_softmax_packed_floats_##ISA(int64_t L, int64_t D)                           \
    {                                                                                        \
        (void)L, (void)D;                                                                    \
        return 0;                                                                            \
    }                                                                                        \
    int64_t dnm_softmax_mr_##ISA(void)                                                      \
    {                                                                                        \
        return 1;                                                                            \
    }                                                                                        \
    void dnm_softmax_pack_f_##ISA(const float *lab, int64_t L, int64_t D, const int64_t *col, \
                                  const int64_t *pos, const int64_t *rows, int64_t n,        \
                                  float *packed)                                             \
    {                                                                                        \
        (void)lab, (void)L, (void)D, (void)col, (void)pos, (void)rows, (void)n, (void)packed; \
    }

#endif
