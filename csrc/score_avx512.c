/* score_avx512.c - dnm's own float scoring kernel for CPUs with AVX-512F
 * (chosen at run time, see dnm_score in score.c): score_simd.h with 16 float
 * lanes and 32 x 14 register tiles (28 zmm accumulators). */
#include "score.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>

#if defined(__GNUC__) && defined(__x86_64__) && !defined(DNM_NO_CLONES)
#include "simd_exp.h"

DNM_DEFINE_HAVE(avx512, "avx512f", "fma")

#define TGT DNM_TGT_AVX512
#define W 16
#define WD 8
#define NR DNM_NR_AVX512
#define SIMD_IT_BYTES (1 << 19)    /* packed images per tile, at most */
#define SIMD_FN(name) name##_avx512
#define SIMD_LEAVE() _mm256_zeroupper()

typedef __m512 VF;
typedef __m512d VD;
typedef __mmask8 VM;
TGT static inline VF vf_load(const float *p) { return _mm512_load_ps(p); }
TGT static inline void vf_store(float *p, VF v) { _mm512_store_ps(p, v); }
TGT static inline void vf_storeu(float *p, VF v) { _mm512_storeu_ps(p, v); }
TGT static inline void vf_stream(float *p, VF v) { _mm512_stream_ps(p, v); }
TGT static inline VF vf_set1(float x) { return _mm512_set1_ps(x); }
TGT static inline VF vf_zero(void) { return _mm512_setzero_ps(); }
TGT static inline VF vf_fma(VF a, VF b, VF c) { return _mm512_fmadd_ps(a, b, c); }
TGT static inline VF vf_max(VF a, VF b) { return _mm512_max_ps(a, b); }
TGT static inline VF vf_add(VF a, VF b) { return _mm512_add_ps(a, b); }
TGT static inline VF vf_sub(VF a, VF b) { return _mm512_sub_ps(a, b); }
TGT static inline VF vf_mul(VF a, VF b) { return _mm512_mul_ps(a, b); }
TGT static inline VF exp_neg(VF x) { return dnm_exp_neg16(x); }
TGT static inline VD vd_loadu(const double *p) { return _mm512_loadu_pd(p); }
TGT static inline void vd_storeu(double *p, VD v) { _mm512_storeu_pd(p, v); }
TGT static inline VD vd_set1(double x) { return _mm512_set1_pd(x); }
TGT static inline VD vd_zero(void) { return _mm512_setzero_pd(); }
TGT static inline VD vd_add(VD a, VD b) { return _mm512_add_pd(a, b); }
TGT static inline VD vd_sub(VD a, VD b) { return _mm512_sub_pd(a, b); }
TGT static inline VD vd_mul(VD a, VD b) { return _mm512_mul_pd(a, b); }
TGT static inline VD vd_max(VD a, VD b) { return _mm512_max_pd(a, b); }
TGT static inline VD vd_min(VD a, VD b) { return _mm512_min_pd(a, b); }
TGT static inline VD vd_fma(VD a, VD b, VD c) { return _mm512_fmadd_pd(a, b, c); }
TGT static inline VD exp_pd(VD x) { return dnm_exp_pd8(x); }
TGT static inline VD vd_lo(VF v) { return _mm512_cvtps_pd(_mm512_castps512_ps256(v)); }
TGT static inline VD vd_hi(VF v)
{
    return _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}
TGT static inline VM vm_gt(VD a, VD b) { return _mm512_cmp_pd_mask(a, b, _CMP_GT_OQ); }
TGT static inline VM vm_not_ge(VD a, VD b) { return _mm512_cmp_pd_mask(a, b, _CMP_NGE_UQ); }
TGT static inline int vm_any(VM a, VM b, VM c, VM d) { return (a | b | c | d) != 0; }
TGT static inline VM vm_or(VM a, VM b) { return (VM)(a | b); }
/* the lanes' truth values as bits (lane 0 = bit 0) */
TGT static inline int vm_bits(VM m) { return (int)m; }
/* m ? x : y, lane by lane */
TGT static inline VD vd_select(VM m, VD x, VD y) { return _mm512_mask_blend_pd(m, y, x); }

#include "score_simd.h"
#include "mining_simd.h"
#include "tta_simd.h"

#else /* no AVX512 kernel in this build */
#include "mining.h"
DNM_DEFINE_SIMD_STUBS(avx512)
DNM_DEFINE_MINING_STUBS(avx512)
#include "tta.h"
DNM_DEFINE_TTA_STUBS(avx512)
#endif
