/* score_impl.h - body of the scoring kernel, included by score.c once per
 * compute type with REAL, SUF, GEMM, PACK, GATHER, FOLD_ROW defined. */
#define DNM_CAT2(a, b) a##_##b
#define DNM_CAT(a, b) DNM_CAT2(a, b)

static int DNM_CAT(score, SUF)(const dnm_matrix *images, const dnm_matrix *id,
                               const dnm_matrix *neg, const dnm_score_params *p, double *out,
                               int64_t *n_floored, int nt, dnm_tick_fn tick, void *tick_ctx,
                               dnm_error *err)
{
    const int64_t N = images->rows, D = images->cols, C = id->rows;
    const int64_t G = p->groups, Q = p->group_size, L = C + G * Q;
    /* 1/T overflows float for T < 2.9e-39 (and double for subnormal T): the largest finite
     * value gives the same exps (0 below the max, 1 at it) without inf * 0 = NaN */
    REAL invT = (REAL)(1.0 / p->temperature);
    if (!isfinite(invT)) invT = (REAL)(sizeof(REAL) == sizeof(float) ? FLT_MAX : DBL_MAX);
    volatile int stop = 0;
    int64_t floored = 0, done = 0;
    /* rows per image tile: big tiles for big N (less repacking), smaller ones while N is
     * small enough that big tiles would leave threads idle at the end */
    const int64_t IT = p->tile_rows > 0 ? p->tile_rows : dnm_image_tile_rows(N);
    const int64_t ntiles = (N + IT - 1) / IT;

    /* Too little work to split: one thread (a parallel region costs more than it saves). */
    const int nt_lab = (double)L * (double)D < DNM_SERIAL_PACK ? 1 : nt;
    const int nt_img = ntiles < nt ? (int)ntiles
                       : ((double)N * (double)L * (double)(D + 16) < DNM_SERIAL_WORK ? 1 : nt);

    /* [ID; negatives in group order], normalised, once. */
    REAL *lab = (REAL *)malloc((size_t)(L > 0 ? L : 1) * (size_t)D * sizeof(REAL));
    if (!lab) { err->code = DNM_ENOMEM; return DNM_ENOMEM; }

#pragma omp parallel num_threads(nt_lab)
    {
        int64_t bad = -1;
        int lrc;
        /* blocks of rows per call (one scratch allocation each); a block stops at its
         * first bad row, and the smallest such row over all blocks is reported */
        const int64_t B = 256;
#pragma omp for schedule(static)
        for (int64_t i = 0; i < C; i += B) {
            const int64_t e = i + B < C ? i + B : C;
            lrc = PACK(id, i, e, lab + i * D, D, 1, NULL, &bad);
            if (lrc != DNM_OK) dnm_error_record(err, lrc, 1, bad);
        }
#pragma omp for schedule(static)
        for (int64_t q = 0; q < G * Q; q += B) {
            const int64_t n = q + B < G * Q ? B : G * Q - q;
            lrc = GATHER(neg, p->index + q, n, lab + (C + q) * D, D, 1, &bad);
            if (lrc != DNM_OK) dnm_error_record(err, lrc, 2, bad);
        }
    }
    if (err->code != DNM_OK) { free(lab); return err->code; }

    /* labels per GEMM: DNM_LAB_TILE, fewer when a tile of IT images times D is so big that
     * one GEMM would keep a Ctrl-C waiting (at most 2^30 multiply-adds, about 0.1 s, between
     * checks); depends on IT and D only, so a tile grid gives the same bits anywhere */
    int64_t LT = DNM_LAB_TILE;
    while (LT > 32 && (double)IT * (double)LT * (double)D > DNM_TICK_WORK) LT /= 2;

    /* Groups are streamed: [ID; negatives in group order] is walked in label order, so a
     * group's state is alive only while the label tiles that cover it are folded (at most
     * LT groups at a time, in slots g mod RW), and a group's term is added to the row's
     * sum as soon as its last label is folded - in group order, as dnm_score_finish_row
     * adds them, so the scores are the same bits.  The ID accumulator is complete before
     * any group (ID labels come first).  Per-thread state: IT x (2 min(G, LT) + 4)
     * doubles, whatever G. */
    const int64_t RW = G < LT ? G : LT;

#pragma omp parallel num_threads(nt_img)
    {
        REAL *xb = (REAL *)malloc((size_t)IT * (size_t)D * sizeof(REAL));
        REAL *sb = (REAL *)malloc((size_t)IT * (size_t)LT * sizeof(REAL));
        /* state per row: 1 + RW running maxima (ID, group slots), 1 + RW shifted sums,
         * then log(ID sum) and the running sum of the group terms */
        const int64_t SW = 2 * (1 + RW) + 2;
        double *st = (double *)malloc((size_t)IT * (size_t)SW * sizeof(double));
        /* segments of a label tile: at most one ID segment and G + 1 group pieces */
        const int64_t maxseg = LT + 2 < G + 2 ? LT + 2 : G + 2;
        int64_t *so = (int64_t *)malloc((size_t)maxseg * 4 * sizeof(int64_t));
        int64_t my_floored = 0;
        int ok = xb && sb && st && so;
        if (!ok) {
            dnm_error_record(err, DNM_ENOMEM, -1, -1);
            stop = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < ntiles; t++) {
            if (stop || !ok) continue;
            const int64_t r0 = t * IT, r1 = r0 + IT < N ? r0 + IT : N, nr = r1 - r0;
            int64_t bad = -1;
            int prc = PACK(images, r0, r1, xb, D, 1, NULL, &bad);
            if (prc != DNM_OK) {
                dnm_error_record(err, prc, 0, bad);
                stop = 1;
                continue;
            }
            for (int64_t r = 0; r < nr; r++) {
                double *s = st + r * SW;
                s[0] = -INFINITY;
                s[1 + RW] = 0.0;
                s[SW - 1] = 0.0;
            }
            for (int64_t j0 = 0; j0 < L; j0 += LT) {
                if (j0 > 0) { /* a long tile: look for Ctrl-C between its GEMMs */
                    dnm_tick_check(tick, tick_ctx, &done, ntiles, &stop, err);
                    if (stop) break;
                }
                const int64_t w = j0 + LT < L ? LT : L - j0;
                GEMM(DnmRowMajor, DnmNoTrans, DnmTrans, (int)nr, (int)w, (int)D, (REAL)1, xb,
                     (int)D, lab + j0 * D, (int)D, (REAL)0, sb, (int)w);
                /* the tile's columns cut into segments, each feeding one accumulator:
                 * group g's goes to slot 1 + g mod RW */
                int64_t *soff = so, *slen = so + maxseg, *sacc = so + 2 * maxseg;
                int64_t *slot = so + 3 * maxseg;
                const int64_t nseg = dnm_score_segments(j0, w, C, Q, soff, slen, sacc);
                for (int64_t q = 0; q < nseg; q++)
                    slot[q] = sacc[q] == 0 ? 0 : 1 + (sacc[q] - 1) % RW;
                for (int64_t r = 0; r < nr; r++) {
                    double *s = st + r * SW;
                    for (int64_t q = 0; q < nseg; q++) { /* a group's first labels: fresh slot */
                        if (sacc[q] > 0 && C + (sacc[q] - 1) * Q == j0 + soff[q]) {
                            s[slot[q]] = -INFINITY;
                            s[1 + RW + slot[q]] = 0.0;
                        }
                    }
                    FOLD_ROW(sb + r * w, w, nseg, soff, slen, slot, invT, s, s + 1 + RW);
                }
                if (G == 0) continue;
                if (j0 < C && j0 + w >= C) { /* the ID accumulator is complete */
                    for (int64_t r = 0; r < nr; r++) {
                        double *s = st + r * SW;
                        s[SW - 2] = log(s[1 + RW]);
                    }
                }
                /* the groups whose last label was folded */
                int64_t q0 = 0, q1 = nseg;
                if (sacc[q0] == 0) q0++;
                if (q1 > q0 && C + sacc[q1 - 1] * Q != j0 + soff[q1 - 1] + slen[q1 - 1]) q1--;
                for (int64_t r = 0; r < nr && q1 > q0; r++) {
                    double *s = st + r * SW;
                    for (int64_t q = q0; q < q1; q++)
                        s[SW - 1] += dnm_score_group_term(p, C, s[0], s[SW - 2], s[slot[q]],
                                                          s[1 + RW + slot[q]], &my_floored);
                }
            }
            if (stop) continue;
            for (int64_t r = 0; r < nr; r++) {
                const double *s = st + r * SW;
                out[r0 + r] = G > 0 ? dnm_score_finish_groups(p, C, s[SW - 1])
                                    : dnm_score_finish_row(p, C, s[0], s[1 + RW], NULL, NULL,
                                                           &my_floored);
            }
            dnm_tick_done(tick, tick_ctx, &done, ntiles, &stop, err);
        }
#pragma omp atomic
        floored += my_floored;
        free(xb);
        free(sb);
        free(st);
        free(so);
    }
    free(lab);
    *n_floored = floored;
    return dnm_score_close(p, floored, tick, tick_ctx, ntiles, err);
}
#undef DNM_CAT
#undef DNM_CAT2
