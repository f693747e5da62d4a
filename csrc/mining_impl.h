/* mining_impl.h - body of the BLAS-tile mining kernels (kNN log-distance,
 * closeness), included by mining.c once per compute type with REAL, SUF,
 * GEMM, PACK and IS_FLOAT defined (as score_impl.h is by score.c).  The float
 * instance hands the products to dnm's own kernel (mining_simd.h) where the
 * CPU runs it. */

#define DNM_MCAT2(a, b) a##_##b
#define DNM_MCAT(a, b) DNM_MCAT2(a, b)

/* One vectorised pass over a row of the tile: f[t] = 1 where
 * d = (ri + r_t) - 2 s_t (inv_i inv_t) falls below the row threshold ti or
 * (when `both`) below column t's own threshold tj[t].  Returns whether any
 * flag is set.  Thresholds only decrease, so flags computed with the values at
 * the start of the row are a superset of the elements that can enter a buffer;
 * the caller re-checks each flagged element. */
DNM_MCLONES static int DNM_MCAT(flag_row, SUF)(const REAL *s, const double *rj,
                                               const double *ij, const double *tj, double ri,
                                               double ii, double ti, int64_t nc, int both,
                                               unsigned char *f)
{
    int any = 0;
    if (both) {
#pragma omp simd reduction(| : any)
        for (int64_t t = 0; t < nc; t++) {
            double d = (ri + rj[t]) - 2.0 * ((double)s[t] * (ii * ij[t]));
            int h = (d < ti) | (d < tj[t]);
            f[t] = (unsigned char)h;
            any |= h;
        }
    } else {
#pragma omp simd reduction(| : any)
        for (int64_t t = 0; t < nc; t++) {
            double d = (ri + rj[t]) - 2.0 * ((double)s[t] * (ii * ij[t]));
            int h = d < ti;
            f[t] = (unsigned char)h;
            any |= h;
        }
    }
    return any;
}

/* Epilogue of one tile S (nr x nc, leading dimension nc) of raw products
 * s_ij for rows i0.. and columns j0..: cos_ij = s_ij (inv_i inv_j) and
 * d_ij = (r_i + r_j) - 2 cos_ij, offered to row i's buffer (feed_rows) and/or
 * to row j's buffer (feed_cols).  The expression is symmetric in i and j bit
 * for bit, so d_ij is the same whichever side of a tile a row sits on.
 * Buffers exist for the rows [lo, hi) only and row g's live at index g - lo
 * (the full run: lo = 0, hi = N); only rows (feed_rows) or columns
 * (feed_cols) inside [lo, hi) are fed, the others are not even scanned. */
static void DNM_MCAT(knn_tile, SUF)(const REAL *S, int64_t nr, int64_t nc, int64_t i0,
                                    int64_t j0, const double *r, const double *inv,
                                    double *heap, int32_t *hsize, double *thr, int64_t K1,
                                    int64_t lo, int64_t hi, int feed_rows, int feed_cols)
{
    /* fed rows a0..a1 of the tile; scanned columns b0..b1 */
    const int64_t a0 = feed_rows && lo > i0 ? lo - i0 : 0;
    const int64_t a1 = feed_rows && hi < i0 + nr ? hi - i0 : nr;
    const int64_t b0 = feed_cols && lo > j0 ? lo - j0 : 0;
    const int64_t b1 = feed_cols && hi < j0 + nc ? hi - j0 : nc;
    const int64_t w = b1 - b0, jb = j0 + b0;
    if (a1 <= a0 || w <= 0) return;
    const double *rj = r + jb, *ij = inv + jb;
    double *tj = feed_cols ? thr + (jb - lo) : NULL; /* jb >= lo when feeding columns */
    unsigned char f[DNM_KNN_TILE + 8];
    memset(f, 0, sizeof f); /* the padding after w stays 0 */
    for (int64_t a = a0; a < a1; a++) {
        const int64_t i = i0 + a;
        const REAL *s = S + a * nc + b0;
        const double ri = r[i], ii = inv[i];
        /* a row that is not fed flags against -inf: only the column side */
        double *hi_ = feed_rows ? heap + (i - lo) * 2 * K1 : NULL;
        int32_t *ni = feed_rows ? hsize + (i - lo) : NULL;
        double *ti = feed_rows ? thr + (i - lo) : NULL;
        if (!DNM_MCAT(flag_row, SUF)(s, rj, ij, tj, ri, ii, feed_rows ? *ti : -INFINITY, w,
                                     feed_cols, f))
            continue;
        for (int64_t b = 0; b < w; b += 8) {
            uint64_t wd;
            memcpy(&wd, f + b, sizeof wd);
            if (!wd) continue;
            const int64_t e = b + 8 < w ? b + 8 : w;
            for (int64_t t = b; t < e; t++) {
                if (!f[t]) continue;
                double d = (ri + rj[t]) - 2.0 * ((double)s[t] * (ii * ij[t]));
                if (feed_rows && d < *ti) buf_offer(hi_, ni, K1, d, ti);
                if (feed_cols && d < tj[t]) {
                    const int64_t c = jb + t - lo;
                    buf_offer(heap + c * 2 * K1, hsize + c, K1, d, tj + t);
                }
            }
        }
    }
}

/* rho of the rows [lo, hi) (rho[i - lo]); the full run is lo = 0, hi = N.
 * Full run: the tiles (I, J), I <= J, each feeding its rows and, off the
 * diagonal, its columns.  Row range: for every row tile I meeting [lo, hi)
 * and every column tile J, the very GEMM the full run computes for that pair
 * - (I, J) when J >= I, fed on the row side; (J, I) when J < I, fed on the
 * column side - so every d_ij is bitwise the one of the full run, whatever
 * lo and hi (an unaligned range computes the whole tiles it touches). */
static int DNM_MCAT(knn, SUF)(const dnm_matrix *x, int64_t k, int64_t lo, int64_t hi,
                              double *rho, int kernel, int nt, dnm_tick_fn tick, void *tick_ctx,
                              dnm_error *err)
{
    const int64_t N = x->rows, D = x->cols, K1 = k + 1, T = DNM_KNN_TILE, R = hi - lo;
    const int64_t NT = (N + T - 1) / T;
    const int ranged = !(lo == 0 && hi == N);
    const int64_t I0 = lo / T, I1 = (hi + T - 1) / T; /* row tiles of the range */
    const int64_t P = ranged ? (I1 - I0) * NT : NT * (NT + 1) / 2;
    double *r = (double *)malloc((size_t)N * sizeof(double));
    double *inv = (double *)malloc((size_t)N * sizeof(double));
    double *thr = (double *)malloc((size_t)R * sizeof(double));
    int32_t *hsize = (int32_t *)calloc((size_t)R, sizeof(int32_t));
    double *heap = (double *)malloc((size_t)R * (size_t)(2 * K1) * sizeof(double));
    int32_t *pi = NULL;       /* BLAS tiles only: the tile pairs ... */
    omp_lock_t *locks = NULL; /* ... and one lock per row tile */
    REAL *X = NULL; /* packed copy, only when the input cannot be used as it is */
    int rc = DNM_OK;
    volatile int stop = 0;
    int64_t done = 0;
    if (!r || !inv || !thr || !hsize || !heap) {
        dnm_error_set(err, DNM_ENOMEM, 0, -1, -1, 0.0);
        goto out;
    }

    /* 1. norms (double, scaled) and NaN/Inf detection, in parallel (the first bad
     * row wins, whatever the schedule: dnm_error_record) */
#pragma omp parallel num_threads(nt)
    {
        REAL *scratch = (REAL *)malloc((size_t)T * (size_t)D * sizeof(REAL));
        if (!scratch) dnm_error_record(err, DNM_ENOMEM, -1, -1);
#pragma omp for schedule(static)
        for (int64_t t = 0; t < NT; t++) {
            const int64_t r0 = t * T, r1 = r0 + T < N ? r0 + T : N;
            int64_t bad = -1;
            int prc = scratch ? PACK(x, r0, r1, scratch, D, 0, r + r0, &bad) : DNM_OK;
            if (prc != DNM_OK) dnm_error_record(err, prc, prc == DNM_ENOMEM ? -1 : 0, bad);
        }
        free(scratch);
    }
    if (err->code != DNM_OK) goto out;

    /* 2. the guards on the norms (see mining.h) */
    {
        double maxdev = 0.0, rmax = 0.0;
        int64_t le1 = -1, zero = -1;
        for (int64_t i = 0; i < N; i++) {
            double dev = fabs(r[i] - 1.0);
            maxdev = dev > maxdev ? dev : maxdev;
            rmax = r[i] > rmax ? r[i] : rmax;
            if (r[i] == 0.0 && zero < 0) zero = i;
            if (r[i] <= 1.0 && le1 < 0) le1 = i;
        }
        if (zero >= 0) {
            dnm_error_set(err, DNM_EZERO, 0, zero, -1, 0.0);
            goto out;
        }
        if (maxdev <= DNM_KNN_UNIT_TOL) {
            dnm_error_set(err, DNM_EDOMAIN, 0, -1, DNM_KNN_UNIT_NORM, maxdev);
            goto out;
        }
        if (le1 >= 0) {
            dnm_error_set(err, DNM_EDOMAIN, 0, le1, DNM_KNN_NORM_LE1, r[le1]);
            goto out;
        }

        /* raw rows with cos = s_ij / (r_i r_j); for float, rows with huge norms
         * are normalised instead (inv = 1), where float products could overflow */
        const int normalize = rmax > (IS_FLOAT ? DNM_RAW_FLOAT_MAXNORM : DNM_RAW_DOUBLE_MAXNORM);
        for (int64_t i = 0; i < N; i++) inv[i] = normalize ? 1.0 : 1.0 / r[i];
        for (int64_t i = 0; i < R; i++) thr[i] = INFINITY;
#if IS_FLOAT
        if (kernel == DNM_KERNEL_AVX512 || kernel == DNM_KERNEL_AVX2) {
            /* 3-4 on dnm's own product kernel (mining_simd.h) */
            (kernel == DNM_KERNEL_AVX512 ? dnm_knn_f_avx512 : dnm_knn_f_avx2)(
                x, normalize, r, inv, K1, lo, hi, heap, hsize, thr, nt, tick, tick_ctx, err);
        } else
#else
        (void)kernel;
#endif
        {
            /* 3. the matrix that goes to GEMM: the input itself when its layout
             * allows (contiguous rows of the compute type), else a converted copy.
             * Raw rows with cos = s_ij / (r_i r_j); for float, rows with huge norms
             * are normalised in the copy instead (inv = 1). */
            const size_t es = sizeof(REAL);
            const REAL *A;
            int64_t lda;
            pi = (int32_t *)malloc((size_t)P * 2 * sizeof(int32_t));
            locks = (omp_lock_t *)malloc((size_t)NT * sizeof(omp_lock_t));
            if (!pi || !locks) {
                dnm_error_set(err, DNM_ENOMEM, 0, -1, -1, 0.0);
                goto out;
            }
            int direct = !normalize && x->dtype == (IS_FLOAT ? DNM_F32 : DNM_F64) &&
                         x->s1 == (ptrdiff_t)es && x->s0 > 0 && x->s0 % (ptrdiff_t)es == 0 &&
                         ((uintptr_t)x->data % es) == 0 && /* unaligned NumPy views: copy */
                         x->s0 / (ptrdiff_t)es >= D && x->s0 / (ptrdiff_t)es <= 2147483647;
            if (direct) {
                A = (const REAL *)x->data;
                lda = x->s0 / (ptrdiff_t)es;
            } else {
                X = (REAL *)malloc((size_t)N * (size_t)D * es);
                if (!X) {
                    dnm_error_set(err, DNM_ENOMEM, 0, -1, -1, 0.0);
                    goto out;
                }
    #pragma omp parallel for num_threads(nt) schedule(static)
                for (int64_t t = 0; t < NT; t++) {
                    const int64_t r0 = t * T, r1 = r0 + T < N ? r0 + T : N;
                    int64_t bad = -1;
                    (void)PACK(x, r0, r1, X + r0 * D, D, normalize, NULL, &bad); /* checked above */
                }
                A = X;
                lda = D;
            }
            if (!ranged) {
                for (int64_t o = 0, p = 0; o < NT; o++) /* pairs by diagonal offset */
                    for (int64_t I = 0; I + o < NT; I++, p++) {
                        pi[2 * p] = (int32_t)I;
                        pi[2 * p + 1] = (int32_t)(I + o);
                    }
            } else {
                /* (row tile I, column tile J), J-major so that neighbouring tasks
                 * lock different row tiles */
                for (int64_t J = 0, p = 0; J < NT; J++)
                    for (int64_t I = I0; I < I1; I++, p++) {
                        pi[2 * p] = (int32_t)I;
                        pi[2 * p + 1] = (int32_t)J;
                    }
            }
            for (int64_t t = 0; t < NT; t++) omp_init_lock(&locks[t]);

            /* 4. full run: tiles on and above the diagonal, each feeding both row
             * tiles' buffers; row range: see above (only row tile I is fed) */
    #pragma omp parallel num_threads(nt)
            {
                REAL *S = (REAL *)malloc((size_t)T * (size_t)T * es);
                if (!S) {
                    dnm_error_record(err, DNM_ENOMEM, -1, -1);
                    stop = 1;
                }
    #pragma omp for schedule(dynamic, 1)
                for (int64_t p = 0; p < P; p++) {
                    if (stop || !S) continue;
                    const int64_t I = pi[2 * p], J = pi[2 * p + 1];
                    /* the GEMM is always that of tiles (min, max): the full run's */
                    const int64_t U = ranged && J < I ? J : I, V = ranged && J < I ? I : J;
                    const int64_t i0 = U * T, nr = i0 + T < N ? T : N - i0;
                    const int64_t j0 = V * T, nc = j0 + T < N ? T : N - j0;
                    GEMM(DnmRowMajor, DnmNoTrans, DnmTrans, (int)nr, (int)nc, (int)D, (REAL)1,
                         A + i0 * lda, (int)lda, A + j0 * lda, (int)lda, (REAL)0, S, (int)nc);
                    if (!ranged) {
                        omp_set_lock(&locks[I]);
                        if (J != I) omp_set_lock(&locks[J]);
                        DNM_MCAT(knn_tile, SUF)(S, nr, nc, i0, j0, r, inv, heap, hsize, thr, K1, 0,
                                                N, 1, J != I);
                        if (J != I) omp_unset_lock(&locks[J]);
                        omp_unset_lock(&locks[I]);
                    } else {
                        const int rows_side = J >= I; /* else row tile I is the column side */
                        omp_set_lock(&locks[I]);
                        DNM_MCAT(knn_tile, SUF)(S, nr, nc, i0, j0, r, inv, heap, hsize, thr, K1, lo,
                                                hi, rows_side, !rows_side);
                        omp_unset_lock(&locks[I]);
                    }
                    dnm_tick_done(tick, tick_ctx, &done, P, &stop, err);
                }
                free(S);
            }
            for (int64_t t = 0; t < NT; t++) omp_destroy_lock(&locks[t]);
        }
        if (err->code != DNM_OK) goto out;
    }

    /* 5. rho_i = mean of log over the k+1 smallest, summed in ascending order */
    {
        int64_t bad_row = R;
        double bad_val = 0.0;
        int bad_kind = DNM_KNN_DIST_LE0;
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int64_t i = 0; i < R; i++) {
            double *h = heap + i * 2 * K1;
            /* a distance that is not a finite double (r_i + r_j overflows) never enters a
             * buffer: a row with fewer than k+1 is refused, never read past its count */
            const int filled = hsize[i] >= K1;
            if (filled) {
                if (hsize[i] > K1) nth_element(h, hsize[i], K1 - 1);
                sort_small(h, K1);
            }
            if (!filled || !(h[0] > 0.0)) {
#pragma omp critical(dnm_mining_err)
                if (i < bad_row) {
                    bad_row = i;
                    bad_val = filled ? h[0] : (double)hsize[i];
                    bad_kind = filled ? DNM_KNN_DIST_LE0 : DNM_KNN_DIST_INF;
                }
                rho[i] = NAN;
                continue;
            }
            double s = 0.0;
            for (int64_t t = 0; t < K1; t++) s += log(h[t]);
            rho[i] = s / (double)K1;
        }
        if (bad_row < R) {
            dnm_error_set(err, DNM_EDOMAIN, 0, lo + bad_row, bad_kind, bad_val);
            goto out;
        }
    }
    if (tick) tick(tick_ctx, P, P);

out:
    rc = err->code;
    free(r);
    free(inv);
    free(thr);
    free(hsize);
    free(heap);
    free(pi);
    free(locks);
    free(X);
    return rc;
}

/* NegLabel / CSP closeness: see mining.h. */
static int DNM_MCAT(closeness, SUF)(const dnm_matrix *id, const dnm_matrix *cand, double eta,
                                    double cut, double *out, int kernel, int nt, dnm_tick_fn tick,
                                    void *tick_ctx, dnm_error *err)
{
    const int64_t C = id->rows, N = cand->rows, D = id->cols;
    int64_t RT = DNM_QNT_ROWS;
    while (RT > 1 && RT * C > DNM_QNT_MAXELEMS) RT /= 2;
    const int64_t ntiles = (N + RT - 1) / RT;
    /* NumPy "linear": virtual index (C-1)*eta, gamma = its fractional part;
     * at or past the last index the result is the maximum. */
    const double vi = (double)(C - 1) * eta;
    const double prevf = floor(vi);
    const int at_max = vi >= (double)(C - 1);
    const int64_t next = at_max ? C - 1 : (int64_t)prevf + 1;
    const double gamma = vi - prevf;
    const int use_cut = !isnan(cut);
#if IS_FLOAT
    if (kernel == DNM_KERNEL_AVX512 || kernel == DNM_KERNEL_AVX2)
        return (kernel == DNM_KERNEL_AVX512 ? dnm_closeness_f_avx512 : dnm_closeness_f_avx2)(
            id, cand, at_max, use_cut, cut, next, gamma, out, nt, tick, tick_ctx, err);
#else
    (void)kernel;
#endif
    volatile int stop = 0;
    int64_t done = 0;

    REAL *L = (REAL *)malloc((size_t)C * (size_t)D * sizeof(REAL));
    if (!L) {
        dnm_error_set(err, DNM_ENOMEM, -1, -1, -1, 0.0);
        return DNM_ENOMEM;
    }
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t i = 0; i < C; i++) {
        int64_t bad = -1;
        int prc = PACK(id, i, i + 1, L + i * D, D, 1, NULL, &bad);
        if (prc != DNM_OK) dnm_error_record(err, prc, prc == DNM_ENOMEM ? -1 : 0, bad);
    }
    if (err->code != DNM_OK) {
        free(L);
        return err->code;
    }

#pragma omp parallel num_threads(nt)
    {
        REAL *xb = (REAL *)malloc((size_t)RT * (size_t)D * sizeof(REAL));
        REAL *sb = (REAL *)malloc((size_t)RT * (size_t)C * sizeof(REAL));
        double *w = (double *)malloc((size_t)C * sizeof(double));
        int ok = xb && sb && w;
        if (!ok) {
            dnm_error_record(err, DNM_ENOMEM, -1, -1);
            stop = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < ntiles; t++) {
            if (stop || !ok) continue;
            const int64_t r0 = t * RT, r1 = r0 + RT < N ? r0 + RT : N, nr = r1 - r0;
            int64_t bad = -1;
            int prc = PACK(cand, r0, r1, xb, D, 1, NULL, &bad);
            if (prc != DNM_OK) {
                dnm_error_record(err, prc, 1, bad);
                stop = 1;
                continue;
            }
            GEMM(DnmRowMajor, DnmNoTrans, DnmTrans, (int)nr, (int)C, (int)D, (REAL)1, xb, (int)D,
                 L, (int)D, (REAL)0, sb, (int)C);
            for (int64_t a = 0; a < nr; a++) {
                const REAL *s = sb + a * C;
                for (int64_t j = 0; j < C; j++) w[j] = (double)s[j];
                out[r0 + a] = dnm_row_quantile(w, C, at_max, use_cut, cut, next, gamma);
            }
            dnm_tick_done(tick, tick_ctx, &done, ntiles, &stop, err);
        }
        free(xb);
        free(sb);
        free(w);
    }
    free(L);
    if (err->code == DNM_OK && tick) tick(tick_ctx, ntiles, ntiles);
    return err->code;
}

#undef DNM_MCAT
#undef DNM_MCAT2
