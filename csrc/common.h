/* common.h - shared pieces of the dnm C core: matrix views with dtype and
 * strides, row packing (conversion + optional L2 normalisation with checks),
 * thread-count policy, cancellation / progress ticks, fast exp.
 * No Python objects here.
 */
#ifndef DNM_COMMON_H
#define DNM_COMMON_H

#include <stddef.h>
#include <stdint.h>

typedef enum { DNM_F16 = 0, DNM_F32 = 1, DNM_F64 = 2 } dnm_dtype;

/* A read-only 2-D view: element (i, j) lives at data + i*s0 + j*s1 (bytes). */
typedef struct {
    const char *data;
    int dtype;
    ptrdiff_t s0, s1;
    int64_t rows, cols;
} dnm_matrix;

/* Error codes returned by kernels; the binding turns them into exceptions. */
enum {
    DNM_OK = 0,
    DNM_ENONFINITE = 1, /* a row holds NaN or Inf (err_row says which) */
    DNM_EZERO = 2,      /* a row has zero norm */
    DNM_ENOMEM = 3,
    DNM_ECANCEL = 4,    /* the tick callback asked to stop (signal / error) */
    DNM_EDOMAIN = 5,    /* a value outside its domain (e.g. distance <= 0) */
    DNM_EGUARD = 6      /* guard="raise" and some Z_j <= S*1e-6 */
};

typedef struct {
    int code;
    int64_t row;   /* first offending row, -1 if none */
    int64_t col;   /* second index where meaningful, -1 otherwise */
    int which;     /* which input: 0 = first matrix argument, 1 = second, ... */
    double value;  /* offending value where meaningful */
} dnm_error;

/* Record an error found by a worker thread (thread-safe): the first error
 * wins, except that a smaller row of the same input replaces it, so the row
 * reported is the first bad one whatever the schedule.  which/row may be -1. */
void dnm_error_record(dnm_error *err, int code, int which, int64_t row);

/* Set every field of err (single-threaded code); dnm_error_reset clears it to
 * DNM_OK with no row, column or input. */
void dnm_error_set(dnm_error *err, int code, int which, int64_t row, int64_t col, double value);
void dnm_error_reset(dnm_error *err);

/* Progress / cancellation callback: called by the calling thread only, between
 * tiles, with work done so far and total.  A nonzero return stops the kernel
 * with DNM_ECANCEL.  May be NULL. */
typedef int (*dnm_tick_fn)(void *ctx, int64_t done, int64_t total);

/* Inside a kernel's OpenMP loop, after a worker finished one of `total` units:
 * count it in *done and, on the calling thread, report progress; a nonzero
 * tick return sets *stop and records DNM_ECANCEL. */
void dnm_tick_done(dnm_tick_fn tick, void *ctx, int64_t *done, int64_t total,
                   volatile int *stop, dnm_error *err);

/* Inside a unit of work, between pieces of it: on the calling thread, report
 * the progress so far (nothing counted) and look for cancellation, as
 * dnm_tick_done does.  Keeps the time between checks short when units are big. */
void dnm_tick_check(dnm_tick_fn tick, void *ctx, int64_t *done, int64_t total,
                    volatile int *stop, dnm_error *err);

/* Pack rows [r0, r1) of `m` into `out` (row-major, leading dimension `ld`),
 * converting to float / double.  With `normalize`, every row is divided by
 * its L2 norm (computed in double with scaling, so huge and tiny magnitudes
 * are safe).  `norms`, if not NULL, receives each row's L2 norm.
 * Returns DNM_OK, DNM_ENONFINITE or DNM_EZERO (zero rows are only an error
 * when normalising) and sets *bad_row. */
int dnm_pack_rows_f(const dnm_matrix *m, int64_t r0, int64_t r1, float *out, int64_t ld,
                    int normalize, double *norms, int64_t *bad_row);
int dnm_pack_rows_d(const dnm_matrix *m, int64_t r0, int64_t r1, double *out, int64_t ld,
                    int normalize, double *norms, int64_t *bad_row);
/* As above, but packs the rows listed in idx[0..n) (a gather). */
int dnm_gather_rows_f(const dnm_matrix *m, const int64_t *idx, int64_t n, float *out,
                      int64_t ld, int normalize, int64_t *bad_pos);
int dnm_gather_rows_d(const dnm_matrix *m, const int64_t *idx, int64_t n, double *out,
                      int64_t ld, int normalize, int64_t *bad_pos);

/* Thread policy.  dnm_threads_begin() returns the number of OpenMP threads a
 * kernel should use (requested > 0 wins, else omp_get_max_threads(), both
 * capped by the OpenBLAS thread setting on entry) and switches OpenBLAS to one
 * thread so that each OpenMP thread's GEMM runs in that thread (no
 * oversubscription).  dnm_threads_end() restores OpenBLAS when the last
 * concurrent kernel leaves. */
int dnm_threads_begin(int requested);
void dnm_threads_end(void);
/* Nonzero in a child forked after this process's OpenMP thread pool started:
 * GNU OpenMP cannot run more than one thread there, so dnm_threads_begin()
 * returns 1 whatever is requested. */
int dnm_forked_child(void);

/* Nonzero when the CPU has AVX-512F (and FMA): the float scoring kernel of
 * score_avx512.c and the AVX-512 row packing are used then.  0 in builds
 * without the x86 clones (DNM_NO_CLONES). */
int dnm_have_avx512(void);
/* Nonzero when the CPU has AVX2 and FMA (the AVX2 scoring kernel, the AVX2
 * row epilogue). */
int dnm_have_avx2(void);
/* Defines int dnm_have_NAME(void): the CPU has both features (asked once). */
#define DNM_DEFINE_HAVE(NAME, F1, F2)                                                        \
    int dnm_have_##NAME(void)                                                                \
    {                                                                                        \
        static int have = -1;                                                                \
        int h = __atomic_load_n(&have, __ATOMIC_RELAXED);                                    \
        if (h < 0) {                                                                         \
            __builtin_cpu_init();                                                            \
            h = __builtin_cpu_supports(F1) && __builtin_cpu_supports(F2);                    \
            __atomic_store_n(&have, h, __ATOMIC_RELAXED);                                    \
        }                                                                                    \
        return h;                                                                            \
    }

/* Fold one row of a label tile into log-domain accumulators.  x[0..w) are
 * the row's logits; the tile is cut into nseg segments (seg_off, seg_len),
 * segment q feeding accumulator seg_acc[q], whose state is (m[a], s[a]):
 * sum of exp((logit - m[a]) / T) so far.  All exps of the row are taken with
 * one shift (the row's max in the tile); a segment whose sum falls below 1e-20
 * (all of its logits far below that max) is redone with its own max, so every
 * accumulator stays exact. */
void dnm_fold_row_f(const float *x, int64_t w, int64_t nseg, const int64_t *seg_off,
                    const int64_t *seg_len, const int64_t *seg_acc, float invT, double *m,
                    double *s);
void dnm_fold_row_d(const double *x, int64_t w, int64_t nseg, const int64_t *seg_off,
                    const int64_t *seg_len, const int64_t *seg_acc, double invT, double *m,
                    double *s);

#endif
