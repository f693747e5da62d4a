/* score_avx2.c - dnm's own float scoring kernel for CPUs with AVX2 and FMA but
 * no AVX-512 (chosen at run time, see dnm_score in score.c): score_simd.h with
 * 8 float lanes and 16 x 6 register tiles (12 ymm accumulators of 16).  It
 * gives the same bits as the AVX-512 kernel. */
#include "score.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>

#if defined(__GNUC__) && defined(__x86_64__) && !defined(DNM_NO_CLONES)
#include "simd_exp.h"

DNM_DEFINE_HAVE(avx2, "avx2", "fma")

#define TGT DNM_TGT_AVX2
#define W 8
#define WD 4
#define NR DNM_NR_AVX2
#define SIMD_IT_BYTES (1 << 18) /* packed images per tile, at most */
#define SIMD_FN(name) name##_avx2
#define SIMD_LEAVE() _mm256_zeroupper()

typedef __m256 VF;
typedef __m256d VD;
typedef __m256d VM; /* all-ones lanes where true */
TGT static inline VF vf_load(const float *p) { return _mm256_load_ps(p); }
TGT static inline void vf_store(float *p, VF v) { _mm256_store_ps(p, v); }
TGT static inline void vf_storeu(float *p, VF v) { _mm256_storeu_ps(p, v); }
TGT static inline void vf_stream(float *p, VF v) { _mm256_stream_ps(p, v); }
TGT static inline VF vf_set1(float x) { return _mm256_set1_ps(x); }
TGT static inline VF vf_zero(void) { return _mm256_setzero_ps(); }
TGT static inline VF vf_fma(VF a, VF b, VF c) { return _mm256_fmadd_ps(a, b, c); }
TGT static inline VF vf_max(VF a, VF b) { return _mm256_max_ps(a, b); }
TGT static inline VF vf_add(VF a, VF b) { return _mm256_add_ps(a, b); }
TGT static inline VF vf_sub(VF a, VF b) { return _mm256_sub_ps(a, b); }
TGT static inline VF vf_mul(VF a, VF b) { return _mm256_mul_ps(a, b); }
TGT static inline VF exp_neg(VF x) { return dnm_exp_neg8(x); }
TGT static inline VD vd_loadu(const double *p) { return _mm256_loadu_pd(p); }
TGT static inline void vd_storeu(double *p, VD v) { _mm256_storeu_pd(p, v); }
TGT static inline VD vd_set1(double x) { return _mm256_set1_pd(x); }
TGT static inline VD vd_zero(void) { return _mm256_setzero_pd(); }
TGT static inline VD vd_add(VD a, VD b) { return _mm256_add_pd(a, b); }
TGT static inline VD vd_sub(VD a, VD b) { return _mm256_sub_pd(a, b); }
TGT static inline VD vd_mul(VD a, VD b) { return _mm256_mul_pd(a, b); }
TGT static inline VD vd_max(VD a, VD b) { return _mm256_max_pd(a, b); }
TGT static inline VD vd_min(VD a, VD b) { return _mm256_min_pd(a, b); }
TGT static inline VD vd_fma(VD a, VD b, VD c) { return _mm256_fmadd_pd(a, b, c); }
TGT static inline VD exp_pd(VD x) { return dnm_exp_pd4(x); }
TGT static inline VD vd_lo(VF v) { return _mm256_cvtps_pd(_mm256_castps256_ps128(v)); }
TGT static inline VD vd_hi(VF v) { return _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)); }
TGT static inline VM vm_gt(VD a, VD b) { return _mm256_cmp_pd(a, b, _CMP_GT_OQ); }
TGT static inline VM vm_not_ge(VD a, VD b) { return _mm256_cmp_pd(a, b, _CMP_NGE_UQ); }
TGT static inline int vm_any(VM a, VM b, VM c, VM d)
{
    return _mm256_movemask_pd(_mm256_or_pd(_mm256_or_pd(a, b), _mm256_or_pd(c, d))) != 0;
}
TGT static inline VM vm_or(VM a, VM b) { return _mm256_or_pd(a, b); }
/* the lanes' truth values as bits (lane 0 = bit 0) */
TGT static inline int vm_bits(VM m) { return _mm256_movemask_pd(m); }
/* m ? x : y, lane by lane */
TGT static inline VD vd_select(VM m, VD x, VD y) { return _mm256_blendv_pd(y, x, m); }

#include "score_simd.h"
#include "mining_simd.h"
#include "tta_simd.h"

#else /* no AVX2 kernel in this build */
#include "mining.h"
DNM_DEFINE_SIMD_STUBS(avx2)
DNM_DEFINE_MINING_STUBS(avx2)
#include "tta.h"
DNM_DEFINE_TTA_STUBS(avx2)
DNM_DEFINE_TTA_PANEL_STUBS
#endif
