/* mining_simd.h - the float mining kernels on dnm's own product kernel, with
 * their own epilogues.  Included by score_avx512.c and score_avx2.c after
 * score_simd.h, whose microkernel (ukernel: one FMA chain per dot product,
 * k = 0..D-1 in order), panel widths (MR images along the vector lanes, NR
 * broadcast columns), row packing (pack_tile) and vector vocabulary it uses.
 *
 * Because every dot product is one FMA chain in k order whatever the tile,
 * the panel or the instruction set, a product <x_i, x_j> does not depend on
 * where rows i and j sit: it equals <x_j, x_i> bit for bit (the products of
 * an FMA commute), copies of a row get the same products, and the AVX2 and
 * AVX-512 builds give the same bits.  The epilogues evaluate in double with
 * plain IEEE operations (no contraction: the build is -std=c11), so the kNN
 * distances and the closeness quantiles are bitwise reproducible across
 * CPUs that run either build and across thread counts.
 *
 * kNN: the candidates are packed once into panels of MR rows (the A side,
 * N x D floats), and each column tile J (DNM_KNN_TILE rows) into panels of NR
 * rows once per task.  A task is one column tile J and every row tile I <= J
 * (the full run: the symmetric half, each tile off the diagonal feeding the
 * buffers of its rows and of its columns) or every row tile of the range (a
 * row range: rows fed only).  The products of a row tile against the column
 * tile go to a per-thread buffer; the epilogue then computes
 * d_ij = (r_i + r_j) - 2 s_ij (inv_i inv_j) for MR rows at a time, flags the
 * few below a row's or a column's threshold, and offers those to the bounded
 * k+1 buffers (mining_util.h) under the row tiles' locks.
 *
 * Closeness: the C ID labels are normalised and packed once into panels of NR;
 * each thread packs a tile of normalised candidates, computes their C cosines
 * label block by label block into a buffer, then takes each candidate's
 * quantile (or maximum) in double.
 */
#include "mining.h"
#include "mining_util.h"

#ifndef DNM_MINE_CB_BYTES
#define DNM_MINE_CB_BYTES (1 << 18) /* packed columns per product block (L2-resident) */
#endif

#if DNM_KNN_TILE % 32 != 0
#error "DNM_KNN_TILE must be a multiple of every kernel's image panel (32)"
#endif

/* Columns per product block for rows of D floats: a multiple of NR. */
static int64_t mine_block_cols(int64_t D, int64_t limit)
{
    int64_t cb = (int64_t)DNM_MINE_CB_BYTES / (D * (int64_t)sizeof(float)) / NR * NR;
    if (cb < NR) cb = NR;
    return cb < limit ? cb : limit;
}

/* Rows [j0, j1) of x (normalised, or as they are) into panels of NR rows
 * [k][NR] at bp (zero rows pad the last panel); tmp holds NR * D floats. */
static int pack_cols(const dnm_matrix *x, int64_t j0, int64_t j1, int normalize, int which,
                     float *tmp, float *bp, dnm_error *err)
{
    const int64_t D = x->cols;
    for (int64_t p0 = j0; p0 < j1; p0 += NR) {
        const int64_t p1 = p0 + NR < j1 ? p0 + NR : j1;
        int64_t bad = -1;
        int rc = dnm_pack_rows_f(x, p0, p1, tmp, D, normalize, NULL, &bad);
        if (rc != DNM_OK) {
            dnm_error_record(err, rc, which, bad);
            return rc;
        }
        for (int64_t i = p1 - p0; i < NR; i++) memset(tmp + i * D, 0, (size_t)D * sizeof(float));
        float *panel = bp + (p0 - j0) * D;
        for (int64_t k = 0; k < D; k++)
            for (int64_t i = 0; i < NR; i++) panel[k * NR + i] = tmp[i * D + k];
    }
    return DNM_OK;
}

/* c = the products of nmp row panels (panel ip at pa + ip * MR * D, its
 * output at c + ip * cstride) with the nb column panels at bp: block_product
 * of score_simd.h without the row maxima (one FMA chain per product). */
TGT static void panel_rows_product(const float *pa, int64_t nmp, const float *bp, int64_t nb,
                                   int64_t D, float *c, int64_t cstride)
{
    for (int64_t ip = 0; ip < nmp; ip++)
        block_product(pa + ip * MR * D, bp, nb, nb * NR, D, c + ip * cstride, NULL);
    SIMD_LEAVE();
}

/* The products S of rows [i0, i0 + nr) (panel ip at S + ip * ncp * MR, laid
 * out [column][MR]) with columns [j0, j0 + nc): d_ij offered to row i's buffer
 * for the rows in [lo, hi) and, with feed_cols (full run: lo = 0), to column
 * j's.  The d_ij of lanes that can enter a buffer (below the row's threshold
 * at the start of the panel, or below the column's) are flagged with vector
 * compares; each is re-checked against the current threshold. */
TGT static void knn_epilogue(const float *S, int64_t ncp, int64_t i0, int64_t nr, int64_t j0,
                             int64_t nc, const double *r, const double *inv, double *heap,
                             int32_t *hsize, double *thr, int64_t K1, int64_t lo, int64_t hi,
                             int feed_cols)
{
    const int64_t nmp = (nr + MR - 1) / MR;
    double rl[MR], il[MR], tl[MR], dv[MR];
    const VD two = vd_set1(2.0);
    for (int64_t ip = 0; ip < nmp; ip++) {
        const float *sp = S + ip * ncp * MR;
        uint64_t valid = 0;
        for (int l = 0; l < MR; l++) {
            const int64_t i = i0 + ip * MR + l;
            const int ok = i < i0 + nr && i >= lo && i < hi;
            rl[l] = ok ? r[i] : 0.0;
            il[l] = ok ? inv[i] : 0.0;
            tl[l] = ok ? thr[i - lo] : -INFINITY;
            if (ok) valid |= (uint64_t)1 << l;
        }
        if (!valid) continue;
        VD ri[4], ii[4], ti[4];
        for (int h = 0; h < 4; h++) {
            ri[h] = vd_loadu(rl + WD * h);
            ii[h] = vd_loadu(il + WD * h);
            ti[h] = vd_loadu(tl + WD * h);
        }
        for (int64_t t = 0; t < nc; t++) {
            const int64_t j = j0 + t;
            const VD rj = vd_set1(r[j]), ij = vd_set1(inv[j]);
            const VD tj = vd_set1(feed_cols ? thr[j - lo] : -INFINITY);
            const VF s0 = vf_load(sp + t * MR), s1 = vf_load(sp + t * MR + W);
            const VD s[4] = {vd_lo(s0), vd_hi(s0), vd_lo(s1), vd_hi(s1)};
            VD d[4];
            uint64_t bits = 0;
            for (int h = 0; h < 4; h++) {
                /* (r_i + r_j) - 2 (s_ij (inv_i inv_j)): symmetric in i, j bit for bit */
                d[h] = vd_sub(vd_add(ri[h], rj), vd_mul(two, vd_mul(s[h], vd_mul(ii[h], ij))));
                bits |= (uint64_t)vm_bits(vm_or(vm_gt(ti[h], d[h]), vm_gt(tj, d[h]))) << (WD * h);
            }
            bits &= valid;
            if (!bits) continue;
            for (int h = 0; h < 4; h++) vd_storeu(dv + WD * h, d[h]);
            int cut = 0;
            while (bits) {
                const int l = __builtin_ctzll(bits);
                bits &= bits - 1;
                const int64_t a = i0 + ip * MR + l - lo;
                const double dd = dv[l];
                if (dd < thr[a]) {
                    buf_offer(heap + a * 2 * K1, hsize + a, K1, dd, thr + a);
                    if (thr[a] != tl[l]) { /* a row's threshold fell: flag against it */
                        tl[l] = thr[a];
                        cut = 1;
                    }
                }
                if (feed_cols && dd < thr[j - lo]) {
                    const int64_t c = j - lo;
                    buf_offer(heap + c * 2 * K1, hsize + c, K1, dd, thr + c);
                }
            }
            if (cut)
                for (int h = 0; h < 4; h++) ti[h] = vd_loadu(tl + WD * h);
        }
    }
    SIMD_LEAVE();
}

int SIMD_FN(dnm_knn_f)(const dnm_matrix *x, int normalize, const double *r, const double *inv,
                       int64_t K1, int64_t lo, int64_t hi, double *heap, int32_t *hsize,
                       double *thr, int nt, dnm_tick_fn tick, void *tick_ctx, dnm_error *err)
{
    const int64_t N = x->rows, D = x->cols, T = DNM_KNN_TILE;
    const int64_t NT = (N + T - 1) / T, TP = (T + NR - 1) / NR * NR;
    const int ranged = !(lo == 0 && hi == N);
    const int64_t I0 = lo / T, I1 = (hi + T - 1) / T; /* row tiles of the range */
    const int64_t P = ranged ? (I1 - I0) * NT : NT * (NT + 1) / 2;
    const int64_t CB = mine_block_cols(D, TP);
    const int64_t nmp_all = (N + MR - 1) / MR;
    float *AP = (float *)alloc64((size_t)nmp_all * MR * (size_t)D * sizeof(float));
    omp_lock_t *locks = (omp_lock_t *)malloc((size_t)NT * sizeof(omp_lock_t));
    volatile int stop = 0;
    int64_t done = 0;
    if (!AP || !locks) {
        dnm_error_record(err, DNM_ENOMEM, -1, -1);
        goto out;
    }

    /* every row, into panels of MR rows (T is a multiple of MR) */
#pragma omp parallel num_threads(nt)
    {
        float *xb = (float *)malloc((size_t)T * (size_t)D * sizeof(float));
        if (!xb) dnm_error_record(err, DNM_ENOMEM, -1, -1);
#pragma omp for schedule(static)
        for (int64_t t = 0; t < NT; t++) {
            const int64_t r0 = t * T, r1 = r0 + T < N ? r0 + T : N;
            if (xb) pack_tile(x, r0, r1, xb, AP + r0 * D, normalize, 0, err);
        }
        free(xb);
    }
    if (err->code != DNM_OK) goto out;
    for (int64_t t = 0; t < NT; t++) omp_init_lock(&locks[t]);

#pragma omp parallel num_threads(nt)
    {
        float *bp = (float *)alloc64((size_t)TP * (size_t)D * sizeof(float));
        float *tmp = (float *)malloc((size_t)NR * (size_t)D * sizeof(float));
        float *S = (float *)alloc64((size_t)T * (size_t)TP * sizeof(float));
        const int ok = bp && tmp && S;
        if (!ok) {
            dnm_error_record(err, DNM_ENOMEM, -1, -1);
            stop = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t q = 0; q < NT; q++) {
            if (stop || !ok) continue;
            const int64_t J = ranged ? q : NT - 1 - q; /* full run: the longest tasks first */
            const int64_t j0 = J * T, nc = j0 + T < N ? T : N - j0;
            const int64_t ncp = (nc + NR - 1) / NR * NR;
            if (pack_cols(x, j0, j0 + nc, normalize, 0, tmp, bp, err) != DNM_OK) {
                stop = 1;
                continue;
            }
            const int64_t Ia = ranged ? I0 : 0, Ib = ranged ? I1 : J + 1;
            for (int64_t I = Ia; I < Ib && !stop; I++) {
                const int64_t i0 = I * T, nr = i0 + T < N ? T : N - i0;
                const int64_t nmp = (nr + MR - 1) / MR;
                for (int64_t cb = 0; cb < ncp; cb += CB) {
                    const int64_t nb = (cb + CB < ncp ? CB : ncp - cb) / NR;
                    panel_rows_product(AP + i0 * D, nmp, bp + cb * D, nb, D, S + cb * MR,
                                       ncp * MR);
                }
                const int cols = !ranged && I != J; /* off the diagonal: both sides */
                omp_set_lock(&locks[I]);
                if (cols) omp_set_lock(&locks[J]); /* I < J: locks in index order */
                knn_epilogue(S, ncp, i0, nr, j0, nc, r, inv, heap, hsize, thr, K1, lo, hi, cols);
                if (cols) omp_unset_lock(&locks[J]);
                omp_unset_lock(&locks[I]);
                dnm_tick_done(tick, tick_ctx, &done, P, &stop, err);
            }
        }
        free(bp);
        free(tmp);
        free(S);
    }
    for (int64_t t = 0; t < NT; t++) omp_destroy_lock(&locks[t]);
out:
    free(AP);
    free(locks);
    return err->code;
}

int SIMD_FN(dnm_closeness_f)(const dnm_matrix *id, const dnm_matrix *cand, int at_max,
                             int use_cut, double cut, int64_t next, double gamma, double *out,
                             int nt, dnm_tick_fn tick, void *tick_ctx, dnm_error *err)
{
    const int64_t C = id->rows, N = cand->rows, D = id->cols;
    const int64_t ncp = (C + NR - 1) / NR * NR, nlp = ncp / NR;
    /* candidate rows per tile: the tile's cosines ([ncp][MR] per panel) within ~2 MB */
    int64_t RT = ((int64_t)1 << 19) / ncp / MR * MR;
    RT = RT < MR ? MR : RT > 256 ? 256 : RT;
    const int64_t ntiles = (N + RT - 1) / RT;
    const int64_t CB = mine_block_cols(D, ncp);
    volatile int stop = 0;
    int64_t done = 0;
    float *LP = (float *)alloc64((size_t)ncp * (size_t)D * sizeof(float));
    if (!LP) {
        dnm_error_record(err, DNM_ENOMEM, -1, -1);
        return err->code;
    }
    {
        const int pnt = (double)C * (double)D < DNM_SERIAL_PACK ? 1 : nt;
#pragma omp parallel num_threads(pnt)
        {
            float *tmp = (float *)malloc((size_t)NR * (size_t)D * sizeof(float));
            if (!tmp) dnm_error_record(err, DNM_ENOMEM, -1, -1);
#pragma omp for schedule(static)
            for (int64_t jp = 0; jp < nlp; jp++) {
                const int64_t j0 = jp * NR, j1 = j0 + NR < C ? j0 + NR : C;
                if (tmp) pack_cols(id, j0, j1, 1, 0, tmp, LP + j0 * D, err);
            }
            free(tmp);
        }
    }
    if (err->code != DNM_OK) {
        free(LP);
        return err->code;
    }

#pragma omp parallel num_threads(nt)
    {
        float *xb = (float *)malloc((size_t)RT * (size_t)D * sizeof(float));
        float *ap = (float *)alloc64((size_t)RT * (size_t)D * sizeof(float));
        float *sb = (float *)alloc64((size_t)RT * (size_t)ncp * sizeof(float));
        double *w = (double *)malloc((size_t)C * sizeof(double));
        const int ok = xb && ap && sb && w;
        if (!ok) {
            dnm_error_record(err, DNM_ENOMEM, -1, -1);
            stop = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < ntiles; t++) {
            if (stop || !ok) continue;
            const int64_t r0 = t * RT, r1 = r0 + RT < N ? r0 + RT : N, nr = r1 - r0;
            const int64_t nmp = (nr + MR - 1) / MR;
            if (pack_tile(cand, r0, r1, xb, ap, 1, 1, err) != DNM_OK) {
                stop = 1;
                continue;
            }
            for (int64_t cb = 0; cb < ncp; cb += CB) {
                const int64_t nb = (cb + CB < ncp ? CB : ncp - cb) / NR;
                panel_rows_product(ap, nmp, LP + cb * D, nb, D, sb + cb * MR, ncp * MR);
            }
            for (int64_t a = 0; a < nr; a++) {
                const float *s = sb + (a / MR) * ncp * MR + a % MR;
                for (int64_t j = 0; j < C; j++) w[j] = (double)s[j * MR];
                out[r0 + a] = dnm_row_quantile(w, C, at_max, use_cut, cut, next, gamma);
            }
            dnm_tick_done(tick, tick_ctx, &done, ntiles, &stop, err);
        }
        free(xb);
        free(ap);
        free(sb);
        free(w);
    }
    free(LP);
    if (err->code == DNM_OK && tick) tick(tick_ctx, ntiles, ntiles);
    return err->code;
}
