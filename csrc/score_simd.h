/* score_simd.h - body of dnm's own float scoring kernel, written once over a
 * small vector vocabulary and expanded per instruction set by score_avx512.c
 * (16 float lanes, NR = 14) and score_avx2.c (8 lanes, NR = 6).  The file
 * including it defines: TGT (the target attribute), W (float lanes), WD
 * (double lanes = W / 2), NR (DNM_NR_*: a divisor of 42), SIMD_IT_BYTES, SIMD_FN(name)
 * (the exported names), the types VF, VD, VM and the vf_* / vd_* / vm_*
 * operations, exp_neg (float, x <= 0), exp_pd (double, x <= 0) and
 * SIMD_LEAVE() (vzeroupper before returning to SSE code).
 *
 * The design:
 *  - the label matrix [ID; negatives in group order] is normalised and packed
 *    once per call (or once per detector) into panels of NR labels, [k][NR];
 *  - each thread normalises an image tile and packs it into panels of MR = 2W
 *    images, [k][MR];
 *  - an MR x NR register-tile microkernel (images along the vector lanes)
 *    computes the logits of MR images against one label block (packed labels
 *    kept in L2 across the tile's panels, the next panel prefetched) into a
 *    small buffer [label][MR] that stays in cache;
 *  - the epilogue folds that buffer into per-image, per-accumulator
 *    log-domain state (running shift and sum, in double), MR images at a
 *    time: the arithmetic of dnm_fold_row_f (one shift per row and block, exp
 *    in float, sums in double, a segment that underflows redone with its own
 *    maximum).
 *
 * Every logit is one FMA chain over k = 0..D-1 in order, whatever the tile
 * sizes, the thread count, the batch or the instruction set: a row's score
 * does not depend on how many other rows are scored with it, and the AVX2 and
 * AVX-512 kernels give the same bits.
 */
#define MR (2 * W) /* images per microkernel tile (2 vectors) */
#ifndef DNM_KC
#define DNM_KC 512 /* k per microkernel call; longer rows are summed in slabs */
#endif
#define KC DNM_KC
#ifndef DNM_LB_BYTES
#define DNM_LB_BYTES (1 << 20)
#endif
#ifndef DNM_STATE_BYTES
#define DNM_STATE_BYTES (16 << 20)
#endif
#ifndef DNM_IT_MAX
#define DNM_IT_MAX 256
#endif
#define SEG_MIN 1e-20 /* as DNM_SEG_MIN in common.c */

/* c[j*MR + i] (+)= sum_k a[k*MR + i] * b[k*NR + j] for i < MR, j < NR (the
 * next label panel starts bnext floats after b).  With mx, the running maxima
 * mx[0..MR) take in the first nvalid columns. */
TGT static void ukernel(int64_t kc, const float *restrict a, const float *restrict b,
                        int64_t bnext, float *restrict c, int accumulate, float *restrict mx,
                        int nvalid)
{
    VF x0[NR], x1[NR];
    if (accumulate) {
#pragma GCC unroll 16
        for (int j = 0; j < NR; j++) {
            x0[j] = vf_load(c + j * MR);
            x1[j] = vf_load(c + j * MR + W);
        }
    } else {
#pragma GCC unroll 16
        for (int j = 0; j < NR; j++) x0[j] = x1[j] = vf_zero();
    }
    for (int64_t k = 0; k < kc; k++) {
        const VF a0 = vf_load(a), a1 = vf_load(a + W);
#pragma GCC unroll 16
        for (int j = 0; j < NR; j++) {
            const VF bj = vf_set1(b[j]);
            x0[j] = vf_fma(a0, bj, x0[j]);
            x1[j] = vf_fma(a1, bj, x1[j]);
        }
        /* the next label panel into L2 while this one is consumed (the first image
         * panel of a block would otherwise wait for it) */
        _mm_prefetch((const char *)(b + bnext), _MM_HINT_T1);
        a += MR;
        b += NR;
    }
#pragma GCC unroll 16
    for (int j = 0; j < NR; j++) {
        vf_store(c + j * MR, x0[j]);
        vf_store(c + j * MR + W, x1[j]);
    }
    if (mx) {
        VF m0 = vf_load(mx), m1 = vf_load(mx + W);
#pragma GCC unroll 16
        for (int j = 0; j < NR; j++) {
            if (j < nvalid) {
                m0 = vf_max(m0, x0[j]);
                m1 = vf_max(m1, x1[j]);
            }
        }
        vf_store(mx, m0);
        vf_store(mx + W, m1);
    }
}

/* Sums over the len columns of xs ([len][MR]) of exp((x - shift) * invT) for
 * the MR image lanes, in double (4 vectors of MR / 4 lanes). */
TGT static inline void sumexp(const float *xs, int64_t len, VF sh0, VF sh1, VF vi, VD out[4])
{
    /* float partial sums of at most 16 terms (each <= 1), then double */
    VD a0 = vd_zero(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t j = 0; j < len;) {
        const int64_t end = j + 16 < len ? j + 16 : len;
        VF f0 = vf_zero(), f1 = f0;
        for (; j < end; j++) {
            f0 = vf_add(f0, exp_neg(vf_mul(vf_sub(vf_load(xs), sh0), vi)));
            f1 = vf_add(f1, exp_neg(vf_mul(vf_sub(vf_load(xs + W), sh1), vi)));
            xs += MR;
        }
        a0 = vd_add(a0, vd_lo(f0));
        a1 = vd_add(a1, vd_hi(f0));
        a2 = vd_add(a2, vd_lo(f1));
        a3 = vd_add(a3, vd_hi(f1));
    }
    out[0] = a0;
    out[1] = a1;
    out[2] = a2;
    out[3] = a3;
}

/* (m, s) <- (m, s) (+) (ms, ss) for MR images (the lanes of 4 double vectors),
 * as combine() in common.c: the larger shift wins, the other sum is rescaled. */
TGT static void combine(double *mp, double *sp, const VD msd[4], const VD ss[4], VD vid)
{
    for (int h = 0; h < 4; h++) {
        const VD mo = vd_loadu(mp + WD * h), so = vd_loadu(sp + WD * h);
        const VM gt = vm_gt(msd[h], mo);
        const VD hi = vd_max(mo, msd[h]), lo = vd_min(mo, msd[h]);
        const VD e = exp_pd(vd_mul(vd_sub(lo, hi), vid));
        /* new max: old sum rescaled plus the new one; else the new one rescaled */
        const VD sn = vd_select(gt, vd_fma(so, e, ss[h]), vd_fma(ss[h], e, so));
        vd_storeu(mp + WD * h, hi);
        vd_storeu(sp + WD * h, sn);
    }
}

/* Fold a block of logits sb ([w][MR]: w labels, MR images; mx: each image's
 * maximum over them) into the state of MR images: m[a*ld + i], s[a*ld + i]
 * for accumulator a, as dnm_fold_row_f does for one row.  With raw, segment
 * q's (shift, sum) pair is stored at raw + q * rawld (MR shifts, MR sums) for
 * combine later, instead of being combined now. */
TGT static void fold_block(const float *sb, const float *mx, int64_t nseg, const int64_t *soff,
                           const int64_t *slen, const int64_t *sacc, float invT, double *m,
                           double *s, int64_t ld, double *raw, int64_t rawld)
{
    const VF mx0 = vf_load(mx), mx1 = vf_load(mx + W);
    const VF vi = vf_set1(invT);
    const VD vid = vd_set1((double)invT), segmin = vd_set1(SEG_MIN);
    for (int64_t q = 0; q < nseg; q++) {
        const float *xs = sb + soff[q] * MR;
        const int64_t len = slen[q];
        VD ss[4];
        sumexp(xs, len, mx0, mx1, vi, ss);
        VD msd[4] = {vd_lo(mx0), vd_hi(mx0), vd_lo(mx1), vd_hi(mx1)};
        VM low[4];
        for (int h = 0; h < 4; h++) low[h] = vm_not_ge(ss[h], segmin);
        if (vm_any(low[0], low[1], low[2], low[3])) { /* far below the row's max: own max */
            VF sm0 = vf_set1(-INFINITY), sm1 = sm0;
            for (int64_t j = 0; j < len; j++) {
                sm0 = vf_max(sm0, vf_load(xs + j * MR));
                sm1 = vf_max(sm1, vf_load(xs + j * MR + W));
            }
            VD t[4];
            sumexp(xs, len, sm0, sm1, vi, t);
            const VD smd[4] = {vd_lo(sm0), vd_hi(sm0), vd_lo(sm1), vd_hi(sm1)};
            for (int h = 0; h < 4; h++) {
                ss[h] = vd_select(low[h], t[h], ss[h]);
                msd[h] = vd_select(low[h], smd[h], msd[h]);
            }
        }
        if (raw) {
            double *r = raw + q * rawld;
            for (int h = 0; h < 4; h++) {
                vd_storeu(r + WD * h, msd[h]);
                vd_storeu(r + MR + WD * h, ss[h]);
            }
        } else {
            combine(m + sacc[q] * ld, s + sacc[q] * ld, msd, ss, vid);
        }
    }
    /* back to SSE code (finish_row, libm): without this the dirty upper halves
     * make every SSE instruction after it wait on a merge (scores became 3x slower) */
    SIMD_LEAVE();
}

/* combine of a pair stored by fold_block(raw) */
TGT static void combine_raw(const double *r, double *mp, double *sp, float invT)
{
    VD msd[4], ss[4];
    for (int h = 0; h < 4; h++) {
        msd[h] = vd_loadu(r + WD * h);
        ss[h] = vd_loadu(r + MR + WD * h);
    }
    combine(mp, sp, msd, ss, vd_set1((double)invT));
    SIMD_LEAVE();
}

/* The logits of image panel pa (MR images) against the np label panels at pb
 * into sb, and the images' maxima over the first w labels into mx. */
TGT static void block_product(const float *pa, const float *pb, int64_t np, int64_t w, int64_t D,
                              float *sb, float *mx)
{
    if (mx)
        for (int i = 0; i < MR; i++) mx[i] = -INFINITY;
    for (int64_t k0 = 0; k0 < D; k0 += KC) {
        const int64_t kc = k0 + KC < D ? KC : D - k0;
        const int last = k0 + kc == D;
        for (int64_t jp = 0; jp < np; jp++)
            ukernel(kc, pa + k0 * MR, pb + jp * NR * D + k0 * NR, NR * D, sb + jp * NR * MR,
                    k0 > 0, last && mx ? mx : NULL, (int)(w - jp * NR));
    }
}

/* Label rows [j0, j0 + NR) of [ID; negatives in group order], normalised,
 * into one panel [k][NR] (rows past L are zero).  tmp holds NR * D floats. */
static int pack_label_panel(const dnm_matrix *id, const dnm_matrix *neg,
                            const dnm_score_params *p, int64_t j0, int64_t L, float *tmp,
                            float *panel, dnm_error *err)
{
    const int64_t C = id->rows, D = id->cols;
    const int64_t j1 = j0 + NR < L ? j0 + NR : L;
    int64_t bad = -1;
    int rc;
    if (j0 < C) {
        const int64_t e = j1 < C ? j1 : C;
        rc = dnm_pack_rows_f(id, j0, e, tmp, D, 1, NULL, &bad);
        if (rc != DNM_OK) { dnm_error_record(err, rc, 1, bad); return rc; }
    }
    if (j1 > C) {
        const int64_t b = j0 > C ? j0 : C;
        rc = dnm_gather_rows_f(neg, p->index + (b - C), j1 - b, tmp + (b - j0) * D, D, 1, &bad);
        if (rc != DNM_OK) { dnm_error_record(err, rc, 2, bad); return rc; }
    }
    for (int64_t i = j1 - j0; i < NR; i++) memset(tmp + i * D, 0, (size_t)D * sizeof(float));
    for (int64_t k = 0; k < D; k++)
        for (int64_t i = 0; i < NR; i++) panel[k * NR + i] = tmp[i * D + k];
    return DNM_OK;
}

int SIMD_FN(dnm_pack_labels)(const dnm_matrix *id, const dnm_matrix *neg, const dnm_score_params *p,
                      float *lab, int nt, dnm_error *err)
{
    const int64_t D = id->cols, L = id->rows + p->groups * p->group_size;
    const int64_t npanels = (L + NR - 1) / NR;
    if ((double)L * (double)D < DNM_SERIAL_PACK) nt = 1;
#pragma omp parallel num_threads(nt)
    {
        float *tmp = (float *)malloc((size_t)NR * (size_t)D * sizeof(float));
        if (!tmp) dnm_error_record(err, DNM_ENOMEM, -1, -1);
#pragma omp for schedule(static)
        for (int64_t jp = 0; jp < npanels; jp++) {
            if (tmp) pack_label_panel(id, neg, p, jp * NR, L, tmp, lab + jp * NR * D, err);
        }
        free(tmp);
    }
    return err->code;
}

static void *alloc64(size_t bytes)
{
    return aligned_alloc(64, (bytes + 63) / 64 * 64);
}

/* Rows [r0, r1) of the images, normalised (or as they are, normalize = 0;
 * row-major into xb), into panels of MR images [k][MR] at ap (zero rows pad
 * the last panel).  A bad row is recorded in err as one of input `which`. */
static int pack_tile(const dnm_matrix *images, int64_t r0, int64_t r1, float *xb, float *ap,
                     int normalize, int which, dnm_error *err)
{
    const int64_t D = images->cols, nr = r1 - r0, nmp = (nr + MR - 1) / MR;
    int64_t bad = -1;
    int rc = dnm_pack_rows_f(images, r0, r1, xb, D, normalize, NULL, &bad);
    if (rc != DNM_OK) {
        dnm_error_record(err, rc, which, bad);
        return rc;
    }
    for (int64_t ip = 0; ip < nmp; ip++) {
        float *pa = ap + ip * MR * D;
        for (int64_t i = 0; i < MR; i++) {
            const int64_t r = ip * MR + i;
            if (r < nr) {
                const float *x = xb + r * D;
                for (int64_t k = 0; k < D; k++) pa[k * MR + i] = x[k];
            } else {
                for (int64_t k = 0; k < D; k++) pa[k * MR + i] = 0.0f;
            }
        }
    }
    return DNM_OK;
}

static void reset_state(double *sm, double *ss, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        sm[i] = -INFINITY;
        ss[i] = 0.0;
    }
}

/* Scores of nr images from their state (accumulator a of image r at a*ld + r). */
static void finish_tile(const dnm_score_params *p, int64_t C, const double *sm,
                        const double *ss, int64_t ld, int64_t nr, double *row, double *out,
                        int64_t *floored)
{
    const int64_t G = p->groups;
    double *mg = row, *sg = row + 1 + G;
    for (int64_t r = 0; r < nr; r++) {
        for (int64_t a = 0; a <= G; a++) {
            mg[a] = sm[a * ld + r];
            sg[a] = ss[a * ld + r];
        }
        out[r] = dnm_score_finish_row(p, C, mg[0], sg[0], mg + 1, sg + 1, floored);
    }
}

/* One image tile and more than one thread: the threads share the label blocks
 * instead.  Each block's per-segment (shift, sum) pairs are kept and combined
 * afterwards in block order - the order the tile loop combines them in - so
 * the scores are the same bits.  Returns the number of blocks (the progress
 * total) when it ran, errors in err, or -1 (nothing done) when the pairs would
 * take more than 32 MiB. */
static int64_t score_split(const dnm_matrix *images, const dnm_score_params *p, const float *lab,
                       int64_t C, int64_t LB, int nt, float invT, double *out,
                       int64_t *n_floored, dnm_tick_fn tick, void *tick_ctx, dnm_error *err)
{
    const int64_t N = images->rows, D = images->cols, G = p->groups, Q = p->group_size;
    const int64_t L = C + G * Q, nmp = (N + MR - 1) / MR, ITP = nmp * MR;
    const int64_t nblocks = (L + LB - 1) / LB;
    int64_t total = 0;
    for (int64_t b = 0; b < nblocks; b++) {
        const int64_t j0 = b * LB, w = j0 + LB < L ? LB : L - j0;
        total += dnm_score_segments(j0, w, C, Q, NULL, NULL, NULL);
    }
    if ((double)total * (double)nmp * 2.0 * MR * sizeof(double) > 32.0 * 1048576.0) return -1;
    int64_t *bstart = (int64_t *)malloc((size_t)(nblocks + 1) * sizeof(int64_t));
    int64_t *so = (int64_t *)malloc((size_t)total * 3 * sizeof(int64_t));
    double *raw = (double *)malloc((size_t)total * (size_t)nmp * 2 * MR * sizeof(double));
    double *sm = (double *)malloc((size_t)(1 + G) * (size_t)ITP * 2 * sizeof(double));
    double *row = (double *)malloc((size_t)(1 + G) * 2 * sizeof(double));
    float *xb = (float *)malloc((size_t)N * (size_t)D * sizeof(float));
    float *ap = (float *)alloc64((size_t)ITP * (size_t)D * sizeof(float));
    if (!(bstart && so && raw && sm && row && xb && ap)) {
        dnm_error_record(err, DNM_ENOMEM, -1, -1);
        goto out;
    }
    int64_t *soff = so, *slen = so + total, *sacc = so + 2 * total;
    for (int64_t b = 0, t = 0; b < nblocks; b++) {
        const int64_t j0 = b * LB, w = j0 + LB < L ? LB : L - j0;
        bstart[b] = t;
        t += dnm_score_segments(j0, w, C, Q, soff + t, slen + t, sacc + t);
    }
    bstart[nblocks] = total;
    if (pack_tile(images, 0, N, xb, ap, 1, 0, err) != DNM_OK) goto out;

    volatile int stop = 0;
    int64_t done = 0;
#pragma omp parallel num_threads(nt)
    {
        float *sb = (float *)alloc64((size_t)MR * (size_t)(LB + 1) * sizeof(float));
        float *mx = sb ? sb + MR * LB : NULL;
        if (!sb) {
            dnm_error_record(err, DNM_ENOMEM, -1, -1);
            stop = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t b = 0; b < nblocks; b++) {
            if (stop || !sb) continue;
            const int64_t j0 = b * LB, w = j0 + LB < L ? LB : L - j0, np = (w + NR - 1) / NR;
            const int64_t q0 = bstart[b], nseg = bstart[b + 1] - q0;
            for (int64_t ip = 0; ip < nmp; ip++) {
                block_product(ap + ip * MR * D, lab + j0 * D, np, w, D, sb, mx);
                fold_block(sb, mx, nseg, soff + q0, slen + q0, sacc + q0, invT, NULL, NULL, 0,
                           raw + (q0 * nmp + ip) * 2 * MR, nmp * 2 * MR);
            }
            dnm_tick_done(tick, tick_ctx, &done, nblocks, &stop, err);
        }
        free(sb);
    }
    if (err->code != DNM_OK) goto out;
    double *ss = sm + (1 + G) * ITP;
    reset_state(sm, ss, (1 + G) * ITP);
    for (int64_t q = 0; q < total; q++)
        for (int64_t ip = 0; ip < nmp; ip++)
            combine_raw(raw + (q * nmp + ip) * 2 * MR, sm + sacc[q] * ITP + ip * MR,
                        ss + sacc[q] * ITP + ip * MR, invT);
    finish_tile(p, C, sm, ss, ITP, N, row, out, n_floored);
out:
    free(bstart);
    free(so);
    free(raw);
    free(sm);
    free(row);
    free(xb);
    free(ap);
    return nblocks;
}

int SIMD_FN(dnm_score_f)(const dnm_matrix *images, const dnm_matrix *id, const dnm_matrix *neg,
                       const dnm_score_params *p, double *out, int64_t *n_floored, int nt,
                       dnm_tick_fn tick, void *tick_ctx, dnm_error *err)
{
    const int64_t N = images->rows, D = images->cols, C = id->rows;
    const int64_t G = p->groups, Q = p->group_size, L = C + G * Q;
    float invT = (float)(1.0 / p->temperature);
    if (!isfinite(invT)) invT = FLT_MAX; /* as in score_impl.h */
    volatile int stop = 0;
    int64_t floored = 0, done = 0;

    /* label blocks of about 1 MB of packed labels (kept in L2 while the tile's image
     * panels pass), in multiples of 42 labels (3 AVX-512 panels, 7 AVX2 ones): both
     * versions cut the labels into the same blocks, hence take the same shifts */
    int64_t LB = (int64_t)DNM_LB_BYTES / (D * (int64_t)sizeof(float)) / 42 * 42;
    LB = LB < 42 ? 42 : LB > 882 ? 882 : LB;
    const int64_t npanels = (L + NR - 1) / NR;
    /* image tiles: at most ~512 KB packed, and enough tiles to keep threads busy */
    int64_t IT = p->tile_rows > 0 ? p->tile_rows : (SIMD_IT_BYTES / 4 / D) / MR * MR;
    if (p->tile_rows <= 0) {
        const int64_t share = ((N + 4 * nt - 1) / (4 * nt) + MR - 1) / MR * MR;
        if (IT > share) IT = share;
        if (IT > DNM_IT_MAX) IT = DNM_IT_MAX;
        if (IT < MR) IT = MR;
    }
    { /* per image 2 (1 + G) doubles of state: at most DNM_STATE_BYTES a thread for many
       * groups (scores do not depend on IT) */
        const int64_t cap = (int64_t)(DNM_STATE_BYTES / (16.0 * (double)(1 + G))) / MR * MR;
        if (IT > cap) IT = cap < MR ? MR : cap;
    }
    const int64_t ntiles = (N + IT - 1) / IT;
    const int64_t ITP = (IT + MR - 1) / MR * MR; /* padded to whole panels */
    /* the work counts padded rows: a panel of MR images costs the same for 1 image */
    const double work = (double)(ntiles > 1 ? N : (N + MR - 1) / MR * MR) * (double)L *
                        (double)(D + 16);
    const int nt_img = ntiles < nt ? (int)ntiles : (work < DNM_SERIAL_WORK ? 1 : nt);

    float *own = NULL; /* the packed labels, unless the caller packed them */
    const float *lab = p->packed;
    if (!lab) {
        own = (float *)alloc64((size_t)npanels * NR * (size_t)D * sizeof(float));
        if (!own) { err->code = DNM_ENOMEM; return DNM_ENOMEM; }
        if (SIMD_FN(dnm_pack_labels)(id, neg, p, own, nt, err) != DNM_OK) {
            free(own);
            return err->code;
        }
        lab = own;
    }

    if (ntiles == 1 && nt > 1 && L > LB && work >= DNM_SERIAL_WORK) {
        const int64_t nblocks = score_split(images, p, lab, C, LB, nt, invT, out, &floored,
                                            tick, tick_ctx, err);
        if (nblocks > 0) {
            free(own);
            *n_floored = floored;
            return dnm_score_close(p, floored, tick, tick_ctx, nblocks, err);
        }
    }

#pragma omp parallel num_threads(nt_img)
    {
        float *xb = (float *)malloc((size_t)IT * (size_t)D * sizeof(float));
        float *ap = (float *)alloc64((size_t)ITP * (size_t)D * sizeof(float));
        float *sb = (float *)alloc64((size_t)MR * (size_t)(LB + 1) * sizeof(float));
        float *mx = sb ? sb + MR * LB : NULL; /* per image maxima over the block */
        double *sm = (double *)malloc((size_t)(1 + G) * (size_t)ITP * 2 * sizeof(double));
        double *ss = sm ? sm + (1 + G) * ITP : NULL;
        double *row = (double *)malloc((size_t)(1 + G) * 2 * sizeof(double));
        const int64_t maxseg = LB + 2 < G + 2 ? LB + 2 : G + 2;
        int64_t *so = (int64_t *)malloc((size_t)maxseg * 3 * sizeof(int64_t));
        int64_t my_floored = 0;
        const int ok = xb && ap && sb && sm && row && so;
        if (!ok) {
            dnm_error_record(err, DNM_ENOMEM, -1, -1);
            stop = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < ntiles; t++) {
            if (stop || !ok) continue;
            const int64_t r0 = t * IT, r1 = r0 + IT < N ? r0 + IT : N, nr = r1 - r0;
            const int64_t nmp = (nr + MR - 1) / MR;
            if (pack_tile(images, r0, r1, xb, ap, 1, 0, err) != DNM_OK) {
                stop = 1;
                continue;
            }
            reset_state(sm, ss, (1 + G) * ITP);
            for (int64_t j0 = 0; j0 < L; j0 += LB) {
                if (j0 > 0) { /* Ctrl-C between label blocks: a tile of many labels is long */
                    dnm_tick_check(tick, tick_ctx, &done, ntiles, &stop, err);
                    if (stop) break;
                }
                const int64_t w = j0 + LB < L ? LB : L - j0;
                const int64_t np = (w + NR - 1) / NR;
                const float *pb = lab + j0 * D; /* j0 is a multiple of NR */
                int64_t *soff = so, *slen = so + maxseg, *sacc = so + 2 * maxseg;
                const int64_t nseg = dnm_score_segments(j0, w, C, Q, soff, slen, sacc);
                for (int64_t ip = 0; ip < nmp; ip++) {
                    block_product(ap + ip * MR * D, pb, np, w, D, sb, mx);
                    fold_block(sb, mx, nseg, soff, slen, sacc, invT, sm + ip * MR, ss + ip * MR,
                               ITP, NULL, 0);
                }
            }
            if (stop) continue;
            finish_tile(p, C, sm, ss, ITP, nr, row, out + r0, &my_floored);
            dnm_tick_done(tick, tick_ctx, &done, ntiles, &stop, err);
        }
#pragma omp atomic
        floored += my_floored;
        free(xb);
        free(ap);
        free(sb);
        free(sm);
        free(row);
        free(so);
    }
    free(own);
    *n_floored = floored;
    return dnm_score_close(p, floored, tick, tick_ctx, ntiles, err);
}

