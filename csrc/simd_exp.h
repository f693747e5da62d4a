/* simd_exp.h - vector exp for x <= 0 in float (8 and 16 lanes) and double (4
 * and 8 lanes), for the x86 kernels chosen at run time.  The float ones are
 * expf_neg of common.c lane by lane (same reduction and polynomial, |relative
 * error| < 2e-7, 0 below -87); the double ones use a Cody-Waite reduction and a
 * degree-13 Taylor polynomial on |r| <= ln2/2 (about 1 ulp) and give 0 below
 * -708 (and for -inf).  The AVX2 and AVX-512 versions give the same bits.
 * Include only under defined(__x86_64__) with GCC or clang. */
#ifndef DNM_SIMD_EXP_H
#define DNM_SIMD_EXP_H
#include <immintrin.h>

#define DNM_TGT_AVX2 __attribute__((target("avx2,fma")))
#define DNM_TGT_AVX512 __attribute__((target("avx512f,fma")))

/* p = the float polynomial at r (Horner), with fma F and splat S */
#define DNM_EXPF_POLY(p, F, S, r)                                                         \
    do {                                                                                  \
        p = F(S(0.00138888892f), r, S(0.00833333377f));                                   \
        p = F(p, r, S(0.0416666679f));                                                    \
        p = F(p, r, S(0.166666672f));                                                     \
        p = F(p, r, S(0.5f));                                                             \
        p = F(p, r, S(1.0f));                                                             \
        p = F(p, r, S(1.0f));                                                             \
    } while (0)

static const double dnm_exp_pd_coef[14] = {
    1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0,
    1.0 / 362880.0,     1.0 / 40320.0,     1.0 / 5040.0,     1.0 / 720.0,
    1.0 / 120.0,        1.0 / 24.0,        1.0 / 6.0,        0.5,
    1.0,                1.0};

DNM_TGT_AVX2 static inline __m256 dnm_exp_neg8(__m256 x)
{
    const __m256 lo = _mm256_set1_ps(-87.0f), magic = _mm256_set1_ps(12582912.0f);
    const __m256 xc = _mm256_max_ps(x, lo);
    const __m256 kn = _mm256_fmadd_ps(xc, _mm256_set1_ps(1.44269504088896341f), magic);
    const __m256 n = _mm256_sub_ps(kn, magic);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), xc);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.42860682030941723e-6f), r);
    __m256 p;
    DNM_EXPF_POLY(p, _mm256_fmadd_ps, _mm256_set1_ps, r);
    const __m256i k = _mm256_sub_epi32(_mm256_castps_si256(kn), _mm256_set1_epi32(0x4B400000));
    const __m256i bits = _mm256_add_epi32(_mm256_castps_si256(p), _mm256_slli_epi32(k, 23));
    const __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    return _mm256_andnot_ps(under, _mm256_castsi256_ps(bits));
}

DNM_TGT_AVX512 static inline __m512 dnm_exp_neg16(__m512 x)
{
    const __m512 lo = _mm512_set1_ps(-87.0f), magic = _mm512_set1_ps(12582912.0f);
    const __m512 xc = _mm512_max_ps(x, lo);
    const __m512 kn = _mm512_fmadd_ps(xc, _mm512_set1_ps(1.44269504088896341f), magic);
    const __m512 n = _mm512_sub_ps(kn, magic);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), xc);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.42860682030941723e-6f), r);
    __m512 p;
    DNM_EXPF_POLY(p, _mm512_fmadd_ps, _mm512_set1_ps, r);
    const __m512i k = _mm512_sub_epi32(_mm512_castps_si512(kn), _mm512_set1_epi32(0x4B400000));
    const __m512i bits = _mm512_add_epi32(_mm512_castps_si512(p), _mm512_slli_epi32(k, 23));
    const __mmask16 under = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
    return _mm512_maskz_mov_ps((__mmask16)~under, _mm512_castsi512_ps(bits));
}

DNM_TGT_AVX2 static inline __m256d dnm_exp_pd4(__m256d x)
{
    const __m256d lo = _mm256_set1_pd(-708.0);
    const __m256d under = _mm256_cmp_pd(x, lo, _CMP_LT_OQ);
    x = _mm256_max_pd(x, lo);
    const __m256d n = _mm256_round_pd(_mm256_mul_pd(x, _mm256_set1_pd(1.4426950408889634)),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256d r = _mm256_fnmadd_pd(n, _mm256_set1_pd(0.6931471803691238), x);
    r = _mm256_fnmadd_pd(n, _mm256_set1_pd(1.9082149292705877e-10), r);
    __m256d p = _mm256_set1_pd(dnm_exp_pd_coef[0]);
    for (int i = 1; i < 14; i++) p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(dnm_exp_pd_coef[i]));
    /* 2^n for n in [-1021, 0]: n + 1023 in the exponent field */
    const __m256i ni = _mm256_castpd_si256(_mm256_add_pd(n, _mm256_set1_pd(6755399441055744.0)));
    const __m256i e2 = _mm256_slli_epi64(_mm256_add_epi64(ni, _mm256_set1_epi64x(1023)), 52);
    return _mm256_andnot_pd(under, _mm256_mul_pd(p, _mm256_castsi256_pd(e2)));
}

DNM_TGT_AVX512 static inline __m512d dnm_exp_pd8(__m512d x)
{
    const __m512d lo = _mm512_set1_pd(-708.0);
    const __mmask8 under = _mm512_cmp_pd_mask(x, lo, _CMP_LT_OQ);
    x = _mm512_max_pd(x, lo);
    const __m512d n = _mm512_roundscale_pd(_mm512_mul_pd(x, _mm512_set1_pd(1.4426950408889634)),
                                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512d r = _mm512_fnmadd_pd(n, _mm512_set1_pd(0.6931471803691238), x);
    r = _mm512_fnmadd_pd(n, _mm512_set1_pd(1.9082149292705877e-10), r);
    __m512d p = _mm512_set1_pd(dnm_exp_pd_coef[0]);
    for (int i = 1; i < 14; i++) p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(dnm_exp_pd_coef[i]));
    return _mm512_maskz_mov_pd((__mmask8)~under, _mm512_scalef_pd(p, n));
}

#endif
