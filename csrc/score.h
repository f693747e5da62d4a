/* score.h - fused scoring kernel: GEMM of image tiles against label tiles and a
 * log-domain epilogue (per-accumulator running max, exp, sums in double). */
#ifndef DNM_SCORE_H
#define DNM_SCORE_H
#include "common.h"

enum { DNM_SCORE_MCM = 0, DNM_SCORE_MAXLOGIT = 1, DNM_SCORE_ENERGY = 2,
       DNM_SCORE_NEGLABEL = 3, DNM_SCORE_DNM = 4 };
enum { DNM_GUARD_FLOOR = 0, DNM_GUARD_DCL = 1, DNM_GUARD_RAISE = 2 };
/* DNM: where Z_j <= S * DNM_FLOOR, guard "floor" sets Z_j := S * DNM_FLOOR and
 * guard "raise" fails (DNM_EGUARD); the kernel counts those pairs. */
#define DNM_FLOOR 1e-6
#define DNM_FLOOR_TEXT "1e-6" /* as messages print it */

typedef struct {
    int kind;
    double temperature;
    double tau;
    int guard;
    int64_t groups;         /* G (0 for scores without negatives) */
    int64_t group_size;     /* Q */
    const int64_t *index;   /* G*Q row indices into the negatives, group-major */
    int64_t tile_rows;      /* image rows per tile; 0 = dnm_image_tile_rows(N) */
    int kernel;             /* DNM_KERNEL_*: which float kernel */
    const float *packed;    /* labels packed by dnm_pack_labels (AVX-512 kernel), or NULL */
} dnm_score_params;

/* Float kernels: AUTO takes dnm's own kernel (score_simd.h) in its AVX-512
 * version when the CPU has AVX-512F, else in its AVX2 version when it has
 * AVX2 and FMA, else the SGEMM tiles (score_impl.h).  Float64 always runs the
 * DGEMM tiles.  Asking for a kernel the CPU cannot run fails (DNM_EDOMAIN). */
enum { DNM_KERNEL_AUTO = 0, DNM_KERNEL_BLAS = 1, DNM_KERNEL_AVX512 = 2, DNM_KERNEL_AVX2 = 3 };

/* Labels per packed panel of dnm's own kernel, per instruction set (both
 * divide 42, the label-block unit of score_simd.h). */
#define DNM_NR_AVX512 14
#define DNM_NR_AVX2 6

/* Below these sizes one thread does the job (a parallel region costs more than
 * it saves): packing the labels (L * D values), scoring (N * L * (D + 16)). */
#define DNM_SERIAL_PACK 262144.0
#define DNM_SERIAL_WORK 33554432.0

/* The kernel a float call with `kernel` runs (BLAS, AVX512 or AVX2), or -1
 * when the CPU cannot run the one asked for. */
int dnm_kernel_resolve(int kernel);
/* Labels per packed panel of a resolved kernel (0: the BLAS tiles pack none). */
int dnm_kernel_nr(int resolved);

/* The image tile the kernel uses for N images when not told otherwise (a
 * multiple of DNM_IMG_TILE, depending on N only).  A row's score is bitwise
 * reproducible on the same tile grid: same tile size, tiles starting at
 * multiples of it. */
int64_t dnm_image_tile_rows(int64_t n);

/* images (N, D), id labels (C, D), negatives (M, D) (may be NULL when G == 0).
 * Writes out[N].  *n_floored receives the number of (image, group) pairs where
 * the DNM denominator hit the guard.  Computes in double when any input is
 * float64, else in float. */
int dnm_score(const dnm_matrix *images, const dnm_matrix *id, const dnm_matrix *neg,
              const dnm_score_params *p, double *out, int64_t *n_floored, int nthreads,
              dnm_tick_fn tick, void *tick_ctx, dnm_error *err);

/* dnm's own kernels' packed label matrix, made once and reused across calls (a
 * detector scoring batch after batch): for L labels of dimension D and the
 * kernel p->kernel resolves to, ceil(L / nr) panels of nr * D floats, nr =
 * dnm_kernel_nr(...).  dnm_pack_labels fills them from id, neg and p's groups
 * (NaN/Inf/zero rows are errors, as in dnm_score); it fails with DNM_EDOMAIN
 * when p->kernel resolves to the BLAS tiles.  With p->packed set, dnm_score
 * skips its own packing in dnm's kernels (the BLAS tiles ignore it); the
 * caller makes sure the pack is of these labels for the same kernel. */
int dnm_pack_labels(const dnm_matrix *id, const dnm_matrix *neg, const dnm_score_params *p,
                    float *out, int nthreads, dnm_error *err);

/* Internal, shared by the float kernels. */
#define DNM_DECLARE_SIMD(ISA)                                                                \
    int dnm_pack_labels_##ISA(const dnm_matrix *id, const dnm_matrix *neg,                  \
                              const dnm_score_params *p, float *lab, int nt, dnm_error *err);\
    int dnm_score_f_##ISA(const dnm_matrix *images, const dnm_matrix *id,                   \
                          const dnm_matrix *neg, const dnm_score_params *p, double *out,    \
                          int64_t *n_floored, int nt, dnm_tick_fn tick, void *tick_ctx,     \
                          dnm_error *err);
DNM_DECLARE_SIMD(avx512)
DNM_DECLARE_SIMD(avx2)
/* A build without an instruction set's kernel (not x86-64, or DNM_NO_CLONES):
 * its entry points fail with DNM_EDOMAIN (dnm_kernel_resolve never picks it). */
#define DNM_DEFINE_SIMD_STUBS(ISA)                                                           \
    int dnm_have_##ISA(void) { return 0; }                                                  \
    int dnm_pack_labels_##ISA(const dnm_matrix *id, const dnm_matrix *neg,                  \
                              const dnm_score_params *p, float *lab, int nt, dnm_error *err)\
    {                                                                                        \
        (void)id, (void)neg, (void)p, (void)lab, (void)nt;                                   \
        err->code = DNM_EDOMAIN;                                                             \
        return DNM_EDOMAIN;                                                                  \
    }                                                                                        \
    int dnm_score_f_##ISA(const dnm_matrix *images, const dnm_matrix *id,                   \
                          const dnm_matrix *neg, const dnm_score_params *p, double *out,    \
                          int64_t *n_floored, int nt, dnm_tick_fn tick, void *tick_ctx,     \
                          dnm_error *err)                                                    \
    {                                                                                        \
        (void)images, (void)id, (void)neg, (void)p, (void)out, (void)n_floored, (void)nt;   \
        (void)tick, (void)tick_ctx;                                                          \
        err->code = DNM_EDOMAIN;                                                             \
        return DNM_EDOMAIN;                                                                  \
    }
/* The segments of label block [j0, j0 + w) of [ID; G groups of Q]: pieces of
 * the ID range and of the groups, each feeding one accumulator (0 = ID,
 * 1 + g = group g).  Writes offsets (from j0), lengths and accumulators when
 * soff is not NULL; returns their number. */
int64_t dnm_score_segments(int64_t j0, int64_t w, int64_t C, int64_t Q, int64_t *soff,
                           int64_t *slen, int64_t *sacc);
/* A score kernel's return: guard="raise" with floored pairs gives DNM_EGUARD,
 * and a successful call reports its last progress tick. */
int dnm_score_close(const dnm_score_params *p, int64_t floored, dnm_tick_fn tick, void *ctx,
                    int64_t total, dnm_error *err);
/* One image's score from its accumulators (shift m, sum s of exp((logit - m)/T)):
 * the ID ones (mS, sS) and the G groups' (mg, sg). */
double dnm_score_finish_row(const dnm_score_params *p, int64_t C, double mS, double sS,
                            const double *mg, const double *sg, int64_t *floored);
/* The same one group at a time (NegLabel / DNM): the score is
 * dnm_score_finish_groups(p, C, sum over j = 0..G-1 in order of
 * dnm_score_group_term(p, C, mS, log(sS), mg[j], sg[j], floored)), the same bits. */
double dnm_score_group_term(const dnm_score_params *p, int64_t C, double mS, double lsS,
                            double mg, double sg, int64_t *floored);
double dnm_score_finish_groups(const dnm_score_params *p, int64_t C, double acc);

/* DNM_IMG_TILE: images per tile of the scoring kernel (a chunk boundary on a
 * multiple of it leaves every GEMM call, hence every score, unchanged). */
extern const int dnm_img_tile;

#endif
