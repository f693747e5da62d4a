/* dnm_blas.h - the few BLAS prototypes dnm needs.
 *
 * The default build links the PyPI package scipy-openblas32, whose symbols
 * carry the `scipy_` prefix; DNM_SYSTEM_BLAS (set by setup.py when
 * DNM_BLAS=system) switches to a system OpenBLAS with plain names.  Integers
 * are 32-bit (LP64 interface) in both.
 */
#ifndef DNM_BLAS_H
#define DNM_BLAS_H

#ifdef DNM_SYSTEM_BLAS
#define DNM_BLAS(name) name
#else
#define DNM_BLAS(name) scipy_##name
#endif

enum { DnmRowMajor = 101, DnmNoTrans = 111, DnmTrans = 112 };

void DNM_BLAS(cblas_sgemm)(int order, int transa, int transb, int m, int n, int k,
                           float alpha, const float *a, int lda, const float *b, int ldb,
                           float beta, float *c, int ldc);
void DNM_BLAS(cblas_dgemm)(int order, int transa, int transb, int m, int n, int k,
                           double alpha, const double *a, int lda, const double *b, int ldb,
                           double beta, double *c, int ldc);
void DNM_BLAS(openblas_set_num_threads)(int n);
int DNM_BLAS(openblas_get_num_threads)(void);

#endif
