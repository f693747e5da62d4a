/* _core.c - the one binding file: Python objects end here.
 *
 * Each entry point takes NumPy arrays that dnm's Python layer has validated
 * (shape, dtype kind), re-checks what could crash, wraps them as plain
 * dnm_matrix views (pointer, dtype, byte strides: no copy), releases the GIL,
 * runs the kernel, and turns kernel error codes into Python exceptions.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

#include <omp.h>

#include "common.h"
#include "dnm_blas.h"
#include "metrics.h"
#include "score.h"

/* ---- shared helpers ----------------------------------------------------- */

static int to_matrix(PyObject *obj, const char *name, dnm_matrix *m)
{
    if (!PyArray_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s: expected a numpy.ndarray", name);
        return -1;
    }
    PyArrayObject *a = (PyArrayObject *)obj;
    if (PyArray_NDIM(a) != 2) {
        PyErr_Format(PyExc_ValueError, "%s: expected a 2-D array, got %d-D", name, PyArray_NDIM(a));
        return -1;
    }
    switch (PyArray_TYPE(a)) {
    case NPY_FLOAT16: m->dtype = DNM_F16; break;
    case NPY_FLOAT32: m->dtype = DNM_F32; break;
    case NPY_FLOAT64: m->dtype = DNM_F64; break;
    default:
        PyErr_Format(PyExc_TypeError, "%s: expected float16, float32 or float64 data", name);
        return -1;
    }
    if (PyArray_ISBYTESWAPPED(a)) {
        PyErr_Format(PyExc_TypeError, "%s: non-native byte order is not supported here", name);
        return -1;
    }
    m->data = PyArray_BYTES(a);
    m->rows = PyArray_DIM(a, 0);
    m->cols = PyArray_DIM(a, 1);
    m->s0 = PyArray_STRIDE(a, 0);
    m->s1 = PyArray_STRIDE(a, 1);
    return 0;
}

typedef struct {
    PyObject *callback; /* None or callable(done, total) */
} tick_ctx;

/* Runs on the calling thread (OpenMP thread 0) between tiles, with the GIL
 * released: take it back briefly to look for signals and report progress. */
static int py_tick(void *vctx, int64_t done, int64_t total)
{
    tick_ctx *ctx = (tick_ctx *)vctx;
    int stop = 0;
    PyGILState_STATE gs = PyGILState_Ensure();
    if (PyErr_Occurred()) {
        stop = 1;
    } else if (PyErr_CheckSignals() < 0) {
        stop = 1;
    } else if (ctx->callback && ctx->callback != Py_None) {
        PyObject *r = PyObject_CallFunction(ctx->callback, "LL", (long long)done, (long long)total);
        if (!r) stop = 1;
        else Py_DECREF(r);
    }
    PyGILState_Release(gs);
    return stop;
}

/* Kernel error -> Python exception.  `names` names the matrix arguments. */
static void raise_error(const dnm_error *e, const char *const *names)
{
    const char *who = (e->which >= 0 && names) ? names[e->which] : "input";
    switch (e->code) {
    case DNM_ENONFINITE:
        PyErr_Format(PyExc_ValueError, "%s: row %lld contains NaN or Inf", who, (long long)e->row);
        break;
    case DNM_EZERO:
        PyErr_Format(PyExc_ValueError, "%s: row %lld has zero norm and cannot be normalised",
                     who, (long long)e->row);
        break;
    case DNM_ENOMEM:
        PyErr_NoMemory();
        break;
    case DNM_ECANCEL:
        if (!PyErr_Occurred()) PyErr_SetNone(PyExc_KeyboardInterrupt);
        break;
    case DNM_EDOMAIN: {
        char msg[256]; /* PyErr_Format has no %g */
        snprintf(msg, sizeof msg, "%s: value %.17g at (%lld, %lld) is outside the domain", who,
                 e->value, (long long)e->row, (long long)e->col);
        PyErr_SetString(PyExc_ValueError, msg);
        break;
    }
    default:
        PyErr_Format(PyExc_RuntimeError, "dnm kernel failed with code %d", e->code);
    }
}

/* ---- scoring -------------------------------------------------------------- */

/* The label side of a score call: id labels, and for NegLabel/DNM the
 * negatives with their (G, Q) group index (a new reference in *idx, which the
 * caller releases; NULL otherwise).  Fills p->groups, group_size, index. */
/* The (G, S) int64 group index of the negatives (each in [0, n_neg)), as a new
 * reference kept alive by the caller while the kernel runs; NULL with ValueError. */
static PyArrayObject *group_index(PyObject *idx_o, int64_t n_neg, int64_t *groups,
                                  int64_t *group_size, const int64_t **index)
{
    PyArrayObject *ix = (PyArrayObject *)PyArray_FROMANY(idx_o, NPY_INT64, 2, 2,
                                                         NPY_ARRAY_CARRAY_RO);
    if (!ix) return NULL;
    *groups = PyArray_DIM(ix, 0);
    *group_size = PyArray_DIM(ix, 1);
    *index = (const int64_t *)PyArray_DATA(ix);
    if (*groups < 1 || *group_size < 1) {
        Py_DECREF(ix);
        PyErr_SetString(PyExc_ValueError, "groups: index array must be non-empty");
        return NULL;
    }
    for (npy_intp q = 0; q < *groups * *group_size; q++) {
        if ((*index)[q] < 0 || (*index)[q] >= n_neg) {
            PyErr_Format(PyExc_ValueError, "groups: index %lld out of range [0, %lld)",
                         (long long)(*index)[q], (long long)n_neg);
            Py_DECREF(ix);
            return NULL;
        }
    }
    return ix;
}

static int parse_labels(int kind, double tau, PyObject *id_o, PyObject *neg_o, PyObject *idx_o,
                        dnm_matrix *id, dnm_matrix *neg, PyArrayObject **idx,
                        dnm_score_params *p)
{
    *idx = NULL;
    if (to_matrix(id_o, "id_labels", id)) return -1;
    if (id->rows < 1 || id->cols < 1) {
        PyErr_SetString(PyExc_ValueError, "id_labels: empty");
        return -1;
    }
    if (kind != DNM_SCORE_NEGLABEL && kind != DNM_SCORE_DNM) return 0;
    if (to_matrix(neg_o, "negatives", neg)) return -1;
    if (neg->cols != id->cols || neg->rows < 1) {
        PyErr_SetString(PyExc_ValueError, "negatives: empty or mismatched dimension");
        return -1;
    }
    if (!(tau > 0 && tau <= 1)) {
        PyErr_SetString(PyExc_ValueError, "tau: must lie in (0, 1]");
        return -1;
    }
    PyArrayObject *ix = group_index(idx_o, neg->rows, &p->groups, &p->group_size, &p->index);
    if (!ix) return -1;
    *idx = ix;
    return 0;
}

static const char *const score_names[] = {"images", "id_labels", "negatives"};

/* 0 when `kernel` names a float kernel this CPU runs, else -1 with ValueError. */
static int check_kernel(int kernel)
{
    if (dnm_kernel_resolve(kernel) >= 0) return 0;
    PyErr_SetString(PyExc_ValueError, "kernel: expected 0 (auto), 1 (BLAS tiles), 2 "
                                      "(AVX-512) or 3 (AVX2), on a CPU that has it");
    return -1;
}

static PyObject *py_score(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"kind", "images", "id_labels", "negatives", "index", "temperature",
                             "tau", "guard", "num_threads", "progress", "tile_rows", "kernel",
                             "packed", NULL};
    int kind, guard, nthreads;
    PyObject *img_o, *id_o, *neg_o, *idx_o, *progress, *packed_o = Py_None;
    double temperature, tau;
    long long tile_rows = 0;
    int kernel = DNM_KERNEL_AUTO;
    (void)self;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "iOOOOddiiO|LiO", kwlist, &kind, &img_o, &id_o,
                                     &neg_o, &idx_o, &temperature, &tau, &guard, &nthreads,
                                     &progress, &tile_rows, &kernel, &packed_o))
        return NULL;
    if (check_kernel(kernel)) return NULL;
    if (tile_rows < 0 || tile_rows > 65536 || tile_rows % 8 != 0) {
        PyErr_SetString(PyExc_ValueError, "tile_rows: expected 0 (automatic) or a multiple of 8 "
                                          "up to 65536");
        return NULL;
    }
    dnm_matrix img, id, neg;
    if (to_matrix(img_o, "images", &img)) return NULL;
    if (!(temperature > 0 && isfinite(temperature)) || kind < 0 || kind > DNM_SCORE_DNM || guard < 0 || guard > 2) {
        PyErr_SetString(PyExc_ValueError, "invalid temperature, kind or guard");
        return NULL;
    }
    dnm_score_params p = {kind, temperature, tau, guard, 0, 0, NULL, (int64_t)tile_rows, kernel,
                          NULL};
    PyArrayObject *idx = NULL;
    if (parse_labels(kind, tau, id_o, neg_o, idx_o, &id, &neg, &idx, &p)) return NULL;
    if (img.rows < 1 || img.cols < 1 || img.cols != id.cols) {
        Py_XDECREF(idx);
        PyErr_SetString(PyExc_ValueError, "images/id_labels: empty or mismatched shapes");
        return NULL;
    }
    if (packed_o != Py_None) { /* from pack_labels for these labels (the caller's promise) */
        /* (panels, nr * D): the shape says which kernel packed it */
        const int nr = dnm_kernel_nr(dnm_kernel_resolve(kernel));
        const int64_t L = id.rows + p.groups * p.group_size;
        PyArrayObject *pk = (PyArrayObject *)packed_o;
        if (!PyArray_Check(packed_o) || PyArray_TYPE(pk) != NPY_FLOAT32 ||
            PyArray_NDIM(pk) != 2 || !PyArray_IS_C_CONTIGUOUS(pk) ||
            (nr > 0 && (PyArray_DIM(pk, 0) != (L + nr - 1) / nr ||
                        PyArray_DIM(pk, 1) != nr * id.cols))) {
            Py_XDECREF(idx);
            PyErr_SetString(PyExc_ValueError, "packed: expected the float32 array pack_labels "
                                              "returns for these labels and this kernel");
            return NULL;
        }
        p.packed = (const float *)PyArray_DATA(pk);
    }
    npy_intp n = img.rows;
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(1, &n, NPY_FLOAT64);
    if (!out) { Py_XDECREF(idx); return NULL; }
    tick_ctx ctx = {progress};
    dnm_error err;
    int64_t floored = 0;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = dnm_score(&img, &id, p.groups ? &neg : NULL, &p, (double *)PyArray_DATA(out), &floored,
                   nthreads, py_tick, &ctx, &err);
    Py_END_ALLOW_THREADS
    Py_XDECREF(idx);
    if (rc == DNM_EGUARD) { /* guard="raise" and some pairs failed: the kernel's verdict */
        Py_DECREF(out);
        const double r = (double)p.group_size * (1.0 - tau) / (tau * (double)id.rows);
        char msg[320]; /* PyErr_Format has no %g */
        snprintf(msg, sizeof msg, "dnm_score: %lld of %lld (image, group) pairs have Z_j <= "
                 "S*" DNM_FLOOR_TEXT " (r = %.3g); use guard='floor' or 'dcl', or a larger tau or "
                 "more groups", (long long)floored, (long long)n * (long long)p.groups, r);
        PyErr_SetString(PyExc_ValueError, msg);
        return NULL;
    }
    if (rc != DNM_OK) {
        Py_DECREF(out);
        raise_error(&err, score_names);
        return NULL;
    }
    if (PyErr_Occurred()) { Py_DECREF(out); return NULL; }
    return Py_BuildValue("NL", out, (long long)floored);
}

/* pack_labels(id_labels, negatives, index, num_threads, kernel=0)
 *   -> float32 (panels, nr * D); negatives and index None for scores without them */
static PyObject *py_pack_labels(PyObject *self, PyObject *args)
{
    int nthreads, kernel = DNM_KERNEL_AUTO;
    PyObject *id_o, *neg_o, *idx_o;
    const double tau = 1.0; /* packing uses no score parameter */
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOi|i", &id_o, &neg_o, &idx_o, &nthreads, &kernel))
        return NULL;
    const int kind = neg_o == Py_None ? DNM_SCORE_MCM : DNM_SCORE_NEGLABEL;
    const int nr = dnm_kernel_nr(dnm_kernel_resolve(kernel));
    if (nr == 0) {
        PyErr_SetString(PyExc_ValueError, "pack_labels: the kernel asked for (or this CPU) "
                                          "packs no labels (AVX2 or AVX-512 needed)");
        return NULL;
    }
    dnm_score_params p = {kind, 1.0, tau, 0, 0, 0, NULL, 0, kernel, NULL};
    dnm_matrix id, neg;
    PyArrayObject *idx = NULL;
    if (parse_labels(kind, tau, id_o, neg_o, idx_o, &id, &neg, &idx, &p)) return NULL;
    const int64_t L = id.rows + p.groups * p.group_size;
    npy_intp dims[2] = {(npy_intp)((L + nr - 1) / nr), (npy_intp)(nr * id.cols)};
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(2, dims, NPY_FLOAT32);
    if (!out) { Py_XDECREF(idx); return NULL; }
    dnm_error err;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = dnm_pack_labels(&id, p.groups ? &neg : NULL, &p, (float *)PyArray_DATA(out), nthreads,
                         &err);
    Py_END_ALLOW_THREADS
    Py_XDECREF(idx);
    if (rc != DNM_OK) {
        Py_DECREF(out);
        raise_error(&err, score_names);
        return NULL;
    }
    return (PyObject *)out;
}

/* ---- threads / info ------------------------------------------------------- */

static PyObject *py_image_tile_rows(PyObject *self, PyObject *arg)
{
    (void)self;
    long long n = PyLong_AsLongLong(arg);
    if (n == -1 && PyErr_Occurred()) return NULL;
    return PyLong_FromLongLong((long long)dnm_image_tile_rows(n));
}

static PyObject *py_kernel_resolve(PyObject *self, PyObject *arg)
{
    (void)self;
    long k = PyLong_AsLong(arg);
    if (k == -1 && PyErr_Occurred()) return NULL;
    return PyLong_FromLong(dnm_kernel_resolve((int)k));
}

static PyObject *py_max_threads(PyObject *self, PyObject *noargs)
{
    (void)self; (void)noargs;
    return PyLong_FromLong(omp_get_max_threads());
}

static PyObject *py_blas_threads(PyObject *self, PyObject *noargs)
{
    (void)self; (void)noargs;
    return PyLong_FromLong(DNM_BLAS(openblas_get_num_threads)());
}

static PyObject *py_resolve_threads(PyObject *self, PyObject *arg)
{
    (void)self;
    long req = PyLong_AsLong(arg);
    if (req == -1 && PyErr_Occurred()) return NULL;
    int n = dnm_threads_begin((int)req);
    dnm_threads_end();
    return PyLong_FromLong(n);
}

/* ---- mining (csrc/mining.c) ------------------------------------------------ */
#include "mining.h"

static PyObject *py_knn_log_distance(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"raw_candidates", "k", "num_threads", "progress", "row_start",
                             "row_stop", "kernel", NULL};
    PyObject *x_o, *progress;
    long long k, row_start = 0, row_stop = -1;
    int nthreads, kernel = DNM_KERNEL_AUTO;
    (void)self;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OLiO|LLi", kwlist, &x_o, &k, &nthreads, &progress,
                                     &row_start, &row_stop, &kernel))
        return NULL;
    if (check_kernel(kernel)) return NULL;
    dnm_matrix x;
    if (to_matrix(x_o, "raw_candidates", &x)) return NULL;
    if (x.rows < 1 || x.cols < 1) {
        PyErr_SetString(PyExc_ValueError, "raw_candidates: empty array");
        return NULL;
    }
    if (k < 0 || k >= x.rows) {
        PyErr_Format(PyExc_ValueError, "k: must satisfy 0 <= k < N = %lld, got %lld",
                     (long long)x.rows, k);
        return NULL;
    }
    if (row_stop < 0) row_stop = (long long)x.rows;
    if (row_start < 0 || row_start >= row_stop || row_stop > (long long)x.rows) {
        PyErr_Format(PyExc_ValueError,
                     "rows: must satisfy 0 <= start < stop <= N = %lld, got (%lld, %lld)",
                     (long long)x.rows, row_start, row_stop);
        return NULL;
    }
    npy_intp n = (npy_intp)(row_stop - row_start);
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(1, &n, NPY_FLOAT64);
    if (!out) return NULL;
    tick_ctx ctx = {progress};
    dnm_error err;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = dnm_knn_log_distance_rows(&x, (int64_t)k, (int64_t)row_start, (int64_t)row_stop,
                                   (double *)PyArray_DATA(out), kernel, nthreads, py_tick, &ctx,
                                   &err);
    Py_END_ALLOW_THREADS
    if (rc != DNM_OK) {
        Py_DECREF(out);
        char msg[512];
        if (rc == DNM_EDOMAIN && err.col == DNM_KNN_UNIT_NORM) {
            snprintf(msg, sizeof msg,
                     "raw_candidates: every row norm lies within %g of 1 (max |norm - 1| = "
                     "%.3g): the rows look L2-normalised, which makes d_ii = 2 - 2 = 0 and "
                     "log d_ii = -inf in every row. The DNM kNN rule needs raw, "
                     "unnormalised encoder outputs (text features before the final L2 "
                     "normalisation)",
                     DNM_KNN_UNIT_TOL, err.value);
            PyErr_SetString(PyExc_ValueError, msg);
        } else if (rc == DNM_EDOMAIN && err.col == DNM_KNN_NORM_LE1) {
            snprintf(msg, sizeof msg,
                     "raw_candidates: row %lld has norm %.17g <= 1, so its self-distance "
                     "d_ii = 2*r_i - 2 is <= 0 and log d_ii is undefined. The DNM kNN rule "
                     "needs raw, unnormalised encoder outputs (CLIP text features have "
                     "norms of about 6-15), not normalised or rescaled rows",
                     (long long)err.row, err.value);
            PyErr_SetString(PyExc_ValueError, msg);
        } else if (rc == DNM_EDOMAIN && err.col == DNM_KNN_DIST_INF) {
            snprintf(msg, sizeof msg,
                     "raw_candidates: row %lld has only %lld of its k+1 distances d_ij = r_i + "
                     "r_j - 2*cos_ij representable as float64 numbers (the norms are so close "
                     "to the float64 limit that r_i + r_j overflows); rescale the embeddings "
                     "(the DNM rule is not scale-invariant, so by a known factor)",
                     (long long)err.row, (long long)err.value);
            PyErr_SetString(PyExc_ValueError, msg);
        } else if (rc == DNM_EDOMAIN && err.col == DNM_KNN_DIST_LE0) {
            snprintf(msg, sizeof msg,
                     "raw_candidates: row %lld has a distance d_ij = r_i + r_j - 2*cos_ij = "
                     "%.17g <= 0 among its k+1 nearest, and log d is undefined. The DNM kNN "
                     "rule needs raw, unnormalised encoder outputs with norms well above 1",
                     (long long)err.row, err.value);
            PyErr_SetString(PyExc_ValueError, msg);
        } else {
            static const char *const names[] = {"raw_candidates"};
            raise_error(&err, names);
        }
        return NULL;
    }
    if (PyErr_Occurred()) { Py_DECREF(out); return NULL; }
    return (PyObject *)out;
}

static PyObject *py_neglabel_closeness(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"id_labels", "candidates", "percentile", "max_cut", "num_threads",
                             "progress", "kernel", NULL};
    PyObject *id_o, *c_o, *progress;
    double percentile, max_cut;
    int nthreads, kernel = DNM_KERNEL_AUTO;
    (void)self;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOddiO|i", kwlist, &id_o, &c_o, &percentile,
                                     &max_cut, &nthreads, &progress, &kernel))
        return NULL;
    if (check_kernel(kernel)) return NULL;
    dnm_matrix id, cand;
    if (to_matrix(id_o, "id_labels", &id) || to_matrix(c_o, "candidates", &cand)) return NULL;
    if (id.rows < 1 || cand.rows < 1 || id.cols < 1 || id.cols != cand.cols) {
        PyErr_SetString(PyExc_ValueError, "id_labels/candidates: empty or mismatched shapes");
        return NULL;
    }
    if (!(percentile >= 0.0 && percentile <= 1.0)) {
        PyErr_SetString(PyExc_ValueError, "percentile: must lie in [0, 1]");
        return NULL;
    }
    npy_intp n = cand.rows;
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(1, &n, NPY_FLOAT64);
    if (!out) return NULL;
    tick_ctx ctx = {progress};
    dnm_error err;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = dnm_neglabel_closeness(&id, &cand, percentile, max_cut, (double *)PyArray_DATA(out),
                                kernel, nthreads, py_tick, &ctx, &err);
    Py_END_ALLOW_THREADS
    if (rc != DNM_OK) {
        static const char *const names[] = {"id_labels", "candidates"};
        Py_DECREF(out);
        raise_error(&err, names);
        return NULL;
    }
    if (PyErr_Occurred()) { Py_DECREF(out); return NULL; }
    return (PyObject *)out;
}

/* metrics(id_scores, ood_scores, tpr, num_threads, id_name, ood_name)
 *   -> (auroc, aupr_in, aupr_out, fpr_paper, fpr_openood, fpr_interp, n_thresholds)
 * Scores: 1-D float64 (the Python layer converts once; anything else is copied here). */
static PyObject *py_metrics(PyObject *self, PyObject *args)
{
    PyObject *id_o, *ood_o;
    double tpr;
    int nthreads;
    const char *id_name, *ood_name;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOdiss", &id_o, &ood_o, &tpr, &nthreads, &id_name, &ood_name))
        return NULL;
    PyArrayObject *a1 = (PyArrayObject *)PyArray_FROMANY(id_o, NPY_FLOAT64, 1, 1, NPY_ARRAY_CARRAY_RO);
    if (!a1) return NULL;
    PyArrayObject *a0 = (PyArrayObject *)PyArray_FROMANY(ood_o, NPY_FLOAT64, 1, 1, NPY_ARRAY_CARRAY_RO);
    if (!a0) { Py_DECREF(a1); return NULL; }
    npy_intp n1 = PyArray_DIM(a1, 0), n0 = PyArray_DIM(a0, 0);
    if (n1 < 1 || n0 < 1 || !(tpr > 0 && tpr <= 1)) {
        Py_DECREF(a1); Py_DECREF(a0);
        PyErr_SetString(PyExc_ValueError, "metrics: empty score set or tpr outside (0, 1]");
        return NULL;
    }
    int nt = dnm_threads_begin(nthreads);
    dnm_metrics_result r;
    dnm_error err;
    tick_ctx ctx = {Py_None}; /* Ctrl-C only */
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = dnm_metrics((const double *)PyArray_DATA(a1), n1, (const double *)PyArray_DATA(a0), n0,
                     tpr, nt, py_tick, &ctx, &r, &err);
    Py_END_ALLOW_THREADS
    dnm_threads_end();
    Py_DECREF(a1);
    Py_DECREF(a0);
    if (rc == DNM_ENONFINITE) {
        const char *who = err.which == 0 ? id_name : ood_name;
        const char *what = isnan(err.value) ? "NaN" : (err.value > 0 ? "+inf" : "-inf");
        PyErr_Format(PyExc_ValueError, "%s: score at index %lld is %s; scores must be finite",
                     who, (long long)err.row, what);
        return NULL;
    }
    if (rc != DNM_OK) {
        raise_error(&err, NULL);
        return NULL;
    }
    return Py_BuildValue("ddddddL", r.auroc, r.aupr_in, r.aupr_out, r.fpr_paper, r.fpr_openood,
                         r.fpr_interp, (long long)r.n_thresholds);
}

static PyObject *py_softmax_rows(PyObject *self, PyObject *args, PyObject *kw); /* below */
static PyObject *py_softmax_block(PyObject *self, PyObject *args);
static PyArrayObject *f64_array(PyObject *o, int ndim, int writeable, const char *name);
static PyArrayObject *queue_array(PyObject *o, int writeable, const char *name);
static PyArrayObject *i64_array(PyObject *o, const char *name);
static int in_range(PyArrayObject *a, int64_t lo, int64_t hi, const char *name);
static PyObject *py_softmax_pack(PyObject *self, PyObject *args);
static PyObject *py_softmax_panel(PyObject *self, PyObject *args);
static PyObject *py_tta_gather(PyObject *self, PyObject *args);
static PyObject *py_tta_masked_means(PyObject *self, PyObject *args);
static PyObject *py_tta_copy_rows(PyObject *self, PyObject *args);
static PyObject *py_rows_mean(PyObject *self, PyObject *args);
static PyObject *py_tta_cached(PyObject *self, PyObject *args);
static PyObject *py_tta_aas(PyObject *self, PyObject *args);

static PyMethodDef methods[] = {
    {"score", (PyCFunction)(void (*)(void))py_score, METH_VARARGS | METH_KEYWORDS,
     "score(kind, images, id_labels, negatives, index, temperature, tau, guard, num_threads, "
     "progress, tile_rows=0, kernel=0, packed=None) -> (float64 scores, n_floored)"},
    {"pack_labels", py_pack_labels, METH_VARARGS,
     "pack_labels(id_labels, negatives, index, num_threads, kernel=0) -> float32 "
     "(panels, nr * D): dnm's kernels' packed label matrix, for score(..., packed=)"},
    {"kernel_resolve", py_kernel_resolve, METH_O,
     "kernel_resolve(kernel) -> the float kernel a call with it runs (1 BLAS tiles, 2 AVX-512, "
     "3 AVX2), or -1 when this CPU cannot run the one asked for"},
    {"max_threads", py_max_threads, METH_NOARGS, "omp_get_max_threads()"},
    {"image_tile_rows", py_image_tile_rows, METH_O,
     "image_tile_rows(n) -> rows per image tile the scoring kernel uses for n images"},
    {"blas_threads", py_blas_threads, METH_NOARGS, "OpenBLAS thread setting"},
    {"resolve_threads", py_resolve_threads, METH_O, "threads a kernel would use for a request"},
    {"knn_log_distance", (PyCFunction)(void (*)(void))py_knn_log_distance,
     METH_VARARGS | METH_KEYWORDS,
     "knn_log_distance(raw_candidates, k, num_threads, progress, row_start=0, row_stop=N) "
     "-> float64 rho of rows [row_start, row_stop)"},
    {"neglabel_closeness", (PyCFunction)(void (*)(void))py_neglabel_closeness,
     METH_VARARGS | METH_KEYWORDS,
     "neglabel_closeness(id_labels, candidates, percentile, max_cut (nan: none), num_threads, "
     "progress) -> float64 q"},
    {"metrics", py_metrics, METH_VARARGS,
     "metrics(id, ood, tpr, num_threads, id_name, ood_name) -> (auroc, aupr_in, aupr_out, "
     "fpr_paper, fpr_openood, fpr_interp, n_thresholds)"},
    {"softmax_rows", (PyCFunction)(void (*)(void))py_softmax_rows, METH_VARARGS | METH_KEYWORDS,
     "softmax_rows(batch, labels, temperature, num_threads, progress, n_id, index, want_rows, "
     "out=None, kernel=0) "
     "-> (rows or None, id_mass, group_mass or None): softmax over the labels of the logits "
     "of the normalised rows, its ID mass and group masses (csrc/tta.c); with scales= (a "
     "float64 (N, ceil(L / softmax_block)) buffer) the rows are left unscaled, in panels of "
     "softmax_panel images (ceil(N / panel) * panel rows; tta.h), and rows_f32=True (with a "
     "float32 out=, dnm's own kernel only) stores them as float32; packed_rows=True: "
     "the rows in the packed order of softmax_pack (dnm's own kernel only; tta.h)"},
    {"softmax_pack", py_softmax_pack, METH_VARARGS,
     "softmax_pack(labels, n_id, index, kernel, packed=None, rows=None) -> (float32 packed "
     "labels, resolved kernel) for softmax_rows(packed=, packed_kernel=), or None when the "
     "kernel that runs packs nothing; with packed and rows: those label rows repacked in place"},
    {"softmax_block", py_softmax_block, METH_VARARGS,
     "softmax_block(labels, kernel) -> labels per block of the rows' scales"},
    {"softmax_panel", py_softmax_panel, METH_VARARGS,
     "softmax_panel(labels, kernel) -> images per panel of the unscaled rows (1: row-major)"},
    {"tta_gather", py_tta_gather, METH_VARARGS,
     "tta_gather(rows, scales, lb, mr, off, sel, out, num_threads): out = P[:, off + sel]"},
    {"tta_masked_means", py_tta_masked_means, METH_VARARGS,
     "tta_masked_means(rows, scales, lb, mr, off, flag, mean1, mean2, num_threads): the means "
     "of P[flag == 1, off:] and P[flag == 2, off:]"},
    {"tta_copy_rows", py_tta_copy_rows, METH_VARARGS,
     "tta_copy_rows(rows, scales, lb, mr, off, jobs, num_threads), jobs a tuple of (src, "
     "dst_row, dst): dst[dst_row] = P[src, off:] (a float32 dst: rounded to nearest; or "
     "float64), all jobs in one pass"},
    {"tta_aas", py_tta_aas, METH_VARARGS,
     "tta_aas(a_id, vals, beta, step, out, num_threads): TANL's activation-aware score"},
    {"tta_cached", py_tta_cached, METH_VARARGS,
     "tta_cached(rows, off, len, pos, row_index, mass, want_entropy, label_out, entropy_out, "
     "num_threads): AdaNeg's cached images' labels (argmax) and entropies (tta.h)"},
    {"rows_mean", py_rows_mean, METH_VARARGS,
     "rows_mean(a, n, out, num_threads, ckpt=None, every=0, valid=0): out = float32/64 "
     "a[:n].astype(float64).mean(axis=0) (rows in order), resumed from the first `valid` "
     "running-sum checkpoints"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_core",
    .m_doc = "dnm C core (kernels under a thin binding)",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__core(void)
{
    import_array();
    PyObject *m = PyModule_Create(&moduledef);
    if (!m) return NULL;
#ifdef DNM_SYSTEM_BLAS
    PyModule_AddStringConstant(m, "blas", "system");
#else
    PyModule_AddStringConstant(m, "blas", "scipy-openblas32");
#endif
    PyModule_AddIntConstant(m, "KNN_TILE", dnm_knn_tile);
    PyModule_AddIntConstant(m, "IMG_TILE", dnm_img_tile);
    PyModule_AddIntConstant(m, "HAVE_AVX512", dnm_have_avx512());
    PyModule_AddIntConstant(m, "HAVE_AVX2", dnm_have_avx2());
    /* the C enums, so that Python never copies their values */
    PyModule_AddIntConstant(m, "SCORE_MCM", DNM_SCORE_MCM);
    PyModule_AddIntConstant(m, "SCORE_MAX_LOGIT", DNM_SCORE_MAXLOGIT);
    PyModule_AddIntConstant(m, "SCORE_ENERGY", DNM_SCORE_ENERGY);
    PyModule_AddIntConstant(m, "SCORE_NEGLABEL", DNM_SCORE_NEGLABEL);
    PyModule_AddIntConstant(m, "SCORE_DNM", DNM_SCORE_DNM);
    PyModule_AddIntConstant(m, "GUARD_FLOOR", DNM_GUARD_FLOOR);
    PyModule_AddIntConstant(m, "GUARD_DCL", DNM_GUARD_DCL);
    PyModule_AddIntConstant(m, "GUARD_RAISE", DNM_GUARD_RAISE);
    PyModule_AddObject(m, "GUARD_MIN", PyFloat_FromDouble(DNM_FLOOR));
    PyModule_AddStringConstant(m, "GUARD_MIN_TEXT", DNM_FLOOR_TEXT);
    PyModule_AddIntConstant(m, "KERNEL_AUTO", DNM_KERNEL_AUTO);
    PyModule_AddIntConstant(m, "KERNEL_BLAS", DNM_KERNEL_BLAS);
    PyModule_AddIntConstant(m, "KERNEL_AVX512", DNM_KERNEL_AVX512);
    PyModule_AddIntConstant(m, "KERNEL_AVX2", DNM_KERNEL_AVX2);
    return m;
}

/* ---- test-time adaptive scores (csrc/tta.c) -------------------------------- */
#include "tta.h"

/* softmax_rows(batch, labels, temperature, num_threads, progress, n_id, index, want_rows,
 *              out=None: a float64 (N, L) buffer for the rows, kernel=0 (DNM_KERNEL_*), ...;
 *              with scales= the rows are unscaled, in panels, and out is (ceil(N / mr) * mr,
 *              L), float32 with rows_f32=True)
 *   -> (rows (N, L) float64 or None, id_mass (N,), group_mass (N, G) or None) */
static PyObject *py_softmax_rows(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"batch", "labels", "temperature", "num_threads", "progress", "n_id",
                             "index", "want_rows", "out", "kernel", "scales", "packed",
                             "packed_kernel", "packed_rows", "sel", "sel_out", "rows_f32", NULL};
    PyObject *img_o, *lab_o, *progress, *idx_o, *out_o = Py_None, *sc_o = Py_None;
    PyObject *pk_o = Py_None, *sel_o = Py_None, *so_o = Py_None;
    int pk_kernel = 0, packed_rows = 0, rows_f32 = 0;
    double temperature;
    int nthreads, want_rows, kernel = DNM_KERNEL_AUTO;
    long long n_id;
    (void)self;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOdiOLOp|OiOOipOOp", kwlist, &img_o, &lab_o,
                                     &temperature, &nthreads, &progress, &n_id, &idx_o,
                                     &want_rows, &out_o, &kernel, &sc_o, &pk_o, &pk_kernel,
                                     &packed_rows, &sel_o, &so_o, &rows_f32))
        return NULL;
    if (check_kernel(kernel)) return NULL;
    dnm_matrix img, lab;
    if (to_matrix(img_o, "batch", &img) || to_matrix(lab_o, "labels", &lab)) return NULL;
    if (lab.dtype == DNM_F16 || !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)lab_o) ||
        lab.cols != img.cols || lab.rows < 1 || img.cols < 1 || n_id < 0 || n_id > lab.rows) {
        PyErr_SetString(PyExc_ValueError, "labels: expected a C-contiguous float32/float64 "
                                          "matrix with the batch's dimension and n_id rows or more");
        return NULL;
    }
    if (!(temperature > 0 && isfinite(temperature))) {
        PyErr_SetString(PyExc_ValueError, "temperature: must be a finite number > 0");
        return NULL;
    }
    dnm_tta_params p = {temperature, (int64_t)n_id, 0, 0, NULL, NULL, 0, packed_rows, NULL, 0,
                        NULL, NULL, rows_f32};
    const int rtype = rows_f32 ? NPY_FLOAT32 : NPY_FLOAT64;
    if (rows_f32 && (!want_rows || out_o == Py_None || sc_o == Py_None)) {
        PyErr_SetString(PyExc_ValueError, "rows_f32: needs out= (float32) and scales=");
        return NULL;
    }
    PyArrayObject *ix = NULL;
    if (idx_o != Py_None) {
        ix = group_index(idx_o, lab.rows - n_id, &p.groups, &p.group_size, &p.index);
        if (!ix) return NULL;
    }
    npy_intp dims[2] = {img.rows, lab.rows}, n = img.rows, gd[2] = {img.rows, p.groups};
    if (sc_o != Py_None) { /* unscaled rows in panels of mr images (tta.h) */
        const int64_t mr = dnm_softmax_panel(&lab, kernel);
        dims[0] = (img.rows + mr - 1) / mr * mr;
    }
    PyArrayObject *rows = NULL;
    if (want_rows && out_o != Py_None) { /* the caller's buffer for the rows, reused */
        PyArrayObject *o = (PyArrayObject *)out_o;
        if (!PyArray_Check(out_o) || PyArray_TYPE(o) != rtype || PyArray_NDIM(o) != 2 ||
            !PyArray_IS_C_CONTIGUOUS(o) || !PyArray_ISWRITEABLE(o) ||
            PyArray_DIM(o, 0) != dims[0] || PyArray_DIM(o, 1) != dims[1]) {
            Py_XDECREF(ix);
            PyErr_Format(PyExc_ValueError, "out: expected a writeable C-contiguous %s (%lld, L) "
                         "array", rows_f32 ? "float32" : "float64", (long long)dims[0]);
            return NULL;
        }
        Py_INCREF(out_o);
        rows = o;
    } else if (want_rows) {
        rows = (PyArrayObject *)PyArray_SimpleNew(2, dims, NPY_FLOAT64);
    }
    if (pk_o != Py_None) { /* the labels packed once (softmax_pack) */
        PyArrayObject *o = (PyArrayObject *)pk_o;
        const int64_t want = dnm_softmax_packed_size(&lab, &p, kernel);
        if (want < 1 || !PyArray_Check(pk_o) || PyArray_TYPE(o) != NPY_FLOAT32 ||
            PyArray_NDIM(o) != 1 || !PyArray_IS_C_CONTIGUOUS(o) || PyArray_DIM(o, 0) != want ||
            pk_kernel != dnm_kernel_resolve(kernel)) {
            Py_XDECREF(ix);
            PyErr_SetString(PyExc_ValueError, "packed: not these labels' packed copy for the "
                                              "kernel that runs (softmax_pack)");
            return NULL;
        }
        p.packed = (const float *)PyArray_DATA(o);
        p.packed_kernel = pk_kernel;
    }
    if (sel_o != Py_None) { /* the selected columns of the rows, taken while in cache */
        PyArrayObject *sl = (PyArrayObject *)sel_o, *so = (PyArrayObject *)so_o;
        if (!want_rows || !(sl = i64_array(sel_o, "sel")) || in_range(sl, 0, lab.rows, "sel") ||
            !(so = f64_array(so_o, 2, 1, "sel_out")) || PyArray_DIM(so, 0) != img.rows ||
            PyArray_DIM(so, 1) != PyArray_DIM(sl, 0)) {
            Py_XDECREF(ix);
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "sel_out: expected float64 (N, len(sel)), "
                                                  "with the rows");
            return NULL;
        }
        p.sel = (const int64_t *)PyArray_DATA(sl);
        p.n_sel = PyArray_DIM(sl, 0);
        p.sel_out = (double *)PyArray_DATA(so);
    }
    double *scales = NULL;
    if (sc_o != Py_None) { /* unscaled rows and their scales (tta.h) */
        const int64_t lb = dnm_softmax_block(&lab, kernel);
        PyArrayObject *o = (PyArrayObject *)sc_o;
        if (!want_rows || ix || lb < 1 || !PyArray_Check(sc_o) || PyArray_TYPE(o) != NPY_FLOAT64 ||
            PyArray_NDIM(o) != 2 || !PyArray_IS_C_CONTIGUOUS(o) || !PyArray_ISWRITEABLE(o) ||
            PyArray_DIM(o, 0) != img.rows || PyArray_DIM(o, 1) != (lab.rows + lb - 1) / lb) {
            Py_XDECREF(rows);
            Py_XDECREF(ix);
            PyErr_SetString(PyExc_ValueError, "scales: expected a writeable C-contiguous float64 "
                                              "(N, ceil(L / block)) array, with rows and no groups");
            return NULL;
        }
        scales = (double *)PyArray_DATA(o);
    }
    PyArrayObject *idm = (PyArrayObject *)PyArray_SimpleNew(1, &n, NPY_FLOAT64);
    PyArrayObject *grm = ix ? (PyArrayObject *)PyArray_SimpleNew(2, gd, NPY_FLOAT64) : NULL;
    if ((want_rows && !rows) || !idm || (ix && !grm)) {
        Py_XDECREF(rows); Py_XDECREF(idm); Py_XDECREF(grm); Py_XDECREF(ix);
        return NULL;
    }
    tick_ctx ctx = {progress};
    dnm_error err;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = dnm_softmax_rows(&img, &lab, &p, rows ? PyArray_DATA(rows) : NULL,
                          (double *)PyArray_DATA(idm), grm ? (double *)PyArray_DATA(grm) : NULL,
                          scales, kernel, nthreads, py_tick, &ctx, &err);
    Py_END_ALLOW_THREADS
    Py_XDECREF(ix);
    if (rc != DNM_OK || PyErr_Occurred()) {
        static const char *const names[] = {"batch", "labels"};
        Py_XDECREF(rows); Py_DECREF(idm); Py_XDECREF(grm);
        if (rc != DNM_OK) raise_error(&err, names);
        return NULL;
    }
    if (!rows) { Py_INCREF(Py_None); rows = (PyArrayObject *)Py_None; }
    if (!grm) { Py_INCREF(Py_None); grm = (PyArrayObject *)Py_None; }
    return Py_BuildValue("NNN", rows, idm, grm);
}

/* the consumers of unscaled rows (tta.h): internal, called by dnm/tta.py with its own
 * buffers; every shape and index is still checked here */
static PyArrayObject *f64_array(PyObject *o, int ndim, int writeable, const char *name)
{
    PyArrayObject *a = (PyArrayObject *)o;
    if (!PyArray_Check(o) || PyArray_TYPE(a) != NPY_FLOAT64 || PyArray_NDIM(a) != ndim ||
        !PyArray_IS_C_CONTIGUOUS(a) || (writeable && !PyArray_ISWRITEABLE(a))) {
        PyErr_Format(PyExc_ValueError, "%s: expected a C-contiguous float64 %d-D array%s", name,
                     ndim, writeable ? " (writeable)" : "");
        return NULL;
    }
    return a;
}

/* A TANL queue: a C-contiguous float32 or float64 2-D array. */
static PyArrayObject *queue_array(PyObject *o, int writeable, const char *name)
{
    PyArrayObject *a = (PyArrayObject *)o;
    if (!PyArray_Check(o) || (PyArray_TYPE(a) != NPY_FLOAT32 && PyArray_TYPE(a) != NPY_FLOAT64) ||
        PyArray_NDIM(a) != 2 || !PyArray_IS_C_CONTIGUOUS(a) ||
        (writeable && !PyArray_ISWRITEABLE(a))) {
        PyErr_Format(PyExc_ValueError, "%s: expected a C-contiguous float32 or float64 2-D "
                     "array%s", name, writeable ? " (writeable)" : "");
        return NULL;
    }
    return a;
}

static PyArrayObject *i64_array(PyObject *o, const char *name)
{
    PyArrayObject *a = (PyArrayObject *)o;
    if (!PyArray_Check(o) || PyArray_TYPE(a) != NPY_INT64 || PyArray_NDIM(a) != 1 ||
        !PyArray_IS_C_CONTIGUOUS(a)) {
        PyErr_Format(PyExc_ValueError, "%s: expected a C-contiguous int64 1-D array", name);
        return NULL;
    }
    return a;
}

static int in_range(PyArrayObject *a, int64_t lo, int64_t hi, const char *name)
{
    const int64_t *v = (const int64_t *)PyArray_DATA(a);
    for (npy_intp k = 0; k < PyArray_DIM(a, 0); k++) {
        if (v[k] < lo || v[k] >= hi) {
            PyErr_Format(PyExc_ValueError, "%s: index out of range", name);
            return -1;
        }
    }
    return 0;
}

/* unscaled rows (tta.h): scales (N, ceil(L / lb)) float64, rows (ceil(N / mr) * mr, L)
 * float64 or float32 (softmax_rows(rows_f32=True)) in panels of mr >= 1 rows, 0 <= off < L */
static int rows_scales(PyObject *r_o, PyObject *s_o, long long lb, long long mr, long long off,
                       PyArrayObject **r, PyArrayObject **sc)
{
    if (!(*r = queue_array(r_o, 0, "rows")) || !(*sc = f64_array(s_o, 2, 0, "scales")))
        return -1;
    const int64_t L = PyArray_DIM(*r, 1), N = PyArray_DIM(*sc, 0);
    if (lb < 1 || mr < 1 || off < 0 || off >= L || PyArray_DIM(*r, 0) != (N + mr - 1) / mr * mr ||
        PyArray_DIM(*sc, 1) != (L + lb - 1) / lb) {
        PyErr_SetString(PyExc_ValueError, "scales: shape does not match the rows, block and panel");
        return -1;
    }
    return 0;
}

static PyObject *py_softmax_pack(PyObject *self, PyObject *args)
{
    PyObject *lab_o, *idx_o, *pk_o = Py_None, *rows_o = Py_None;
    long long n_id;
    int kernel;
    dnm_matrix lab;
    (void)self;
    if (!PyArg_ParseTuple(args, "OLOi|OO", &lab_o, &n_id, &idx_o, &kernel, &pk_o, &rows_o) ||
        check_kernel(kernel) || to_matrix(lab_o, "labels", &lab))
        return NULL;
    if (n_id < 0 || n_id > lab.rows) {
        PyErr_SetString(PyExc_ValueError, "n_id: out of range");
        return NULL;
    }
    dnm_tta_params p = {1.0, (int64_t)n_id, 0, 0, NULL, NULL, 0, 0, NULL, 0, NULL, NULL, 0};
    PyArrayObject *ix = NULL;
    if (idx_o != Py_None) {
        ix = group_index(idx_o, lab.rows - n_id, &p.groups, &p.group_size, &p.index);
        if (!ix) return NULL;
    }
    const int64_t size = dnm_softmax_packed_size(&lab, &p, kernel);
    if (size < 1) {
        Py_XDECREF(ix);
        Py_RETURN_NONE;
    }
    PyArrayObject *pk, *rows = NULL;
    if (pk_o != Py_None) {
        pk = (PyArrayObject *)pk_o;
        if (!PyArray_Check(pk_o) || PyArray_TYPE(pk) != NPY_FLOAT32 || PyArray_NDIM(pk) != 1 ||
            !PyArray_IS_C_CONTIGUOUS(pk) || !PyArray_ISWRITEABLE(pk) ||
            PyArray_DIM(pk, 0) != size || rows_o == Py_None ||
            !(rows = i64_array(rows_o, "rows")) || in_range(rows, 0, lab.rows, "rows")) {
            Py_XDECREF(ix);
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "packed: expected these labels' packed copy "
                                                  "and the rows to repack");
            return NULL;
        }
        Py_INCREF(pk_o);
    } else {
        npy_intp d = (npy_intp)size;
        pk = (PyArrayObject *)PyArray_SimpleNew(1, &d, NPY_FLOAT32);
        if (!pk) {
            Py_XDECREF(ix);
            return NULL;
        }
    }
    dnm_error err;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = dnm_softmax_pack(&lab, &p, kernel, (float *)PyArray_DATA(pk),
                          rows ? (const int64_t *)PyArray_DATA(rows) : NULL,
                          rows ? PyArray_DIM(rows, 0) : 0, &err);
    Py_END_ALLOW_THREADS
    Py_XDECREF(ix);
    if (rc != DNM_OK) {
        Py_DECREF(pk);
        raise_error(&err, NULL);
        return NULL;
    }
    return Py_BuildValue("Ni", pk, dnm_kernel_resolve(kernel));
}

/* f(labels, kernel) for the (labels, kernel) arguments of softmax_block / softmax_panel */
static PyObject *labels_kernel_query(PyObject *args, int64_t (*f)(const dnm_matrix *, int))
{
    PyObject *lab_o;
    int kernel;
    dnm_matrix lab;
    if (!PyArg_ParseTuple(args, "Oi", &lab_o, &kernel) || check_kernel(kernel) ||
        to_matrix(lab_o, "labels", &lab))
        return NULL;
    return PyLong_FromLongLong((long long)f(&lab, kernel));
}

static PyObject *py_softmax_block(PyObject *self, PyObject *args)
{
    (void)self;
    return labels_kernel_query(args, dnm_softmax_block);
}

static PyObject *py_softmax_panel(PyObject *self, PyObject *args)
{
    (void)self;
    return labels_kernel_query(args, dnm_softmax_panel);
}

static PyObject *py_tta_gather(PyObject *self, PyObject *args)
{
    PyObject *r_o, *s_o, *sel_o, *out_o;
    long long lb, mr, off;
    int nt;
    PyArrayObject *r, *sc, *sel, *out;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOLLLOOi", &r_o, &s_o, &lb, &mr, &off, &sel_o, &out_o, &nt) ||
        rows_scales(r_o, s_o, lb, mr, off, &r, &sc) || !(sel = i64_array(sel_o, "sel")) ||
        !(out = f64_array(out_o, 2, 1, "out")))
        return NULL;
    const int64_t N = PyArray_DIM(sc, 0), L = PyArray_DIM(r, 1), n = PyArray_DIM(sel, 0);
    if (PyArray_DIM(out, 0) != N || PyArray_DIM(out, 1) != n) {
        PyErr_SetString(PyExc_ValueError, "out: expected shape (N, len(sel))");
        return NULL;
    }
    if (in_range(sel, 0, L - off, "sel")) return NULL;
    Py_BEGIN_ALLOW_THREADS
    dnm_tta_gather(PyArray_DATA(r), PyArray_TYPE(r) == NPY_FLOAT32, mr,
                   (const double *)PyArray_DATA(sc), N, L, lb, off, (const int64_t *)PyArray_DATA(sel), n, (double *)PyArray_DATA(out), nt);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *py_tta_masked_means(PyObject *self, PyObject *args)
{
    PyObject *r_o, *s_o, *f_o, *m1_o, *m2_o;
    long long lb, mr, off;
    int nt;
    PyArrayObject *r, *sc, *m1, *m2, *fl = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOLLLOOOi", &r_o, &s_o, &lb, &mr, &off, &f_o, &m1_o, &m2_o,
                          &nt) ||
        rows_scales(r_o, s_o, lb, mr, off, &r, &sc) || !(m1 = f64_array(m1_o, 1, 1, "mean1")) ||
        !(m2 = f64_array(m2_o, 1, 1, "mean2")))
        return NULL;
    const int64_t N = PyArray_DIM(sc, 0), L = PyArray_DIM(r, 1);
    fl = (PyArrayObject *)f_o;
    if (!PyArray_Check(f_o) || PyArray_TYPE(fl) != NPY_UINT8 || PyArray_NDIM(fl) != 1 ||
        !PyArray_IS_C_CONTIGUOUS(fl) || PyArray_DIM(fl, 0) != N ||
        PyArray_DIM(m1, 0) != L - off || PyArray_DIM(m2, 0) != L - off) {
        PyErr_SetString(PyExc_ValueError, "flag: expected uint8 (N,), means (L - off,)");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    dnm_tta_masked_means(PyArray_DATA(r), PyArray_TYPE(r) == NPY_FLOAT32, mr,
                         (const double *)PyArray_DATA(sc), N, L, lb, off, (const unsigned char *)PyArray_DATA(fl),
                         (double *)PyArray_DATA(m1), (double *)PyArray_DATA(m2), nt);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

#define DNM_TTA_MAX_JOBS 8

static PyObject *py_tta_copy_rows(PyObject *self, PyObject *args)
{
    PyObject *r_o, *s_o, *jobs_o;
    long long lb, mr, off;
    int nt;
    PyArrayObject *r, *sc;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOLLLOi", &r_o, &s_o, &lb, &mr, &off, &jobs_o, &nt) ||
        rows_scales(r_o, s_o, lb, mr, off, &r, &sc))
        return NULL;
    const int64_t N = PyArray_DIM(sc, 0), L = PyArray_DIM(r, 1);
    if (!PyTuple_Check(jobs_o) || PyTuple_GET_SIZE(jobs_o) > DNM_TTA_MAX_JOBS) {
        PyErr_SetString(PyExc_ValueError, "jobs: expected a tuple of up to 8 (src, dst_row, dst)");
        return NULL;
    }
    const int njobs = (int)PyTuple_GET_SIZE(jobs_o);
    dnm_tta_copy jobs[DNM_TTA_MAX_JOBS];
    for (int q = 0; q < njobs; q++) {
        PyObject *j = PyTuple_GET_ITEM(jobs_o, q);
        PyArrayObject *src, *dr, *dst;
        if (!PyTuple_Check(j) || PyTuple_GET_SIZE(j) != 3) {
            PyErr_SetString(PyExc_ValueError, "jobs: expected a tuple of up to 8 (src, dst_row, dst)");
            return NULL;
        }
        if (!(src = i64_array(PyTuple_GET_ITEM(j, 0), "src")) ||
            !(dr = i64_array(PyTuple_GET_ITEM(j, 1), "dst_row")) ||
            !(dst = queue_array(PyTuple_GET_ITEM(j, 2), 1, "dst")))
            return NULL;
        const int64_t n = PyArray_DIM(src, 0);
        if (PyArray_DIM(dr, 0) != n || PyArray_DIM(dst, 1) != L - off) {
            PyErr_SetString(PyExc_ValueError, "dst: expected (rows, L - off) and one dst_row per src");
            return NULL;
        }
        if (in_range(src, 0, N, "src") || in_range(dr, 0, PyArray_DIM(dst, 0), "dst_row"))
            return NULL;
        /* distinct destination rows (the copies run in any order) */
        unsigned char *seen = (unsigned char *)calloc((size_t)PyArray_DIM(dst, 0) + 1, 1);
        const int64_t *d = (const int64_t *)PyArray_DATA(dr);
        int dup = 0;
        if (!seen) return PyErr_NoMemory();
        for (int64_t k = 0; k < n && !dup; k++) {
            dup = seen[d[k]];
            seen[d[k]] = 1;
        }
        free(seen);
        if (dup) {
            PyErr_SetString(PyExc_ValueError, "dst_row: a row appears twice");
            return NULL;
        }
        for (int p = 0; p < q; p++)
            if (jobs[p].dst == PyArray_DATA(dst)) {
                PyErr_SetString(PyExc_ValueError, "dst: two jobs write the same array");
                return NULL;
            }
        jobs[q].src = (const int64_t *)PyArray_DATA(src);
        jobs[q].dst_row = d;
        jobs[q].n = n;
        jobs[q].dst = PyArray_DATA(dst);
        jobs[q].f32 = PyArray_TYPE(dst) == NPY_FLOAT32;
        jobs[q].order = NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    dnm_tta_copy_rows(PyArray_DATA(r), PyArray_TYPE(r) == NPY_FLOAT32, mr,
                      (const double *)PyArray_DATA(sc), L, lb, off, jobs, njobs, nt);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *py_tta_aas(PyObject *self, PyObject *args)
{
    PyObject *a_o, *v_o, *out_o;
    long long beta, step;
    int nt;
    PyArrayObject *a, *v, *out;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOLLOi", &a_o, &v_o, &beta, &step, &out_o, &nt) ||
        !(a = f64_array(a_o, 1, 0, "a_id")) || !(v = f64_array(v_o, 2, 0, "vals")) ||
        !(out = f64_array(out_o, 1, 1, "out")))
        return NULL;
    const int64_t N = PyArray_DIM(v, 0), n = PyArray_DIM(v, 1);
    if (PyArray_DIM(a, 0) != N || PyArray_DIM(out, 0) != N || n < 1 || beta < 1 || step < 0) {
        PyErr_SetString(PyExc_ValueError, "tta_aas: need a_id and out (N,), vals (N, n >= 1), "
                                          "beta >= 1, step >= 0");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    dnm_tta_aas((const double *)PyArray_DATA(a), (const double *)PyArray_DATA(v), N, n, beta,
                step, (double *)PyArray_DATA(out), nt);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *py_tta_cached(PyObject *self, PyObject *args)
{
    PyObject *r_o, *pos_o, *ri_o, *m_o, *lab_o, *h_o;
    long long off, len;
    int want_h, nt;
    PyArrayObject *r, *pos = NULL, *ri, *m = NULL, *lab, *h = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "OLLOOOpOOi", &r_o, &off, &len, &pos_o, &ri_o, &m_o, &want_h,
                          &lab_o, &h_o, &nt) ||
        !(r = f64_array(r_o, 2, 0, "rows")) || !(ri = i64_array(ri_o, "row_index")) ||
        (pos_o != Py_None && !(pos = i64_array(pos_o, "pos"))) ||
        (m_o != Py_None && !(m = f64_array(m_o, 1, 0, "mass"))) ||
        !(lab = (PyArrayObject *)lab_o) || (want_h && !(h = f64_array(h_o, 1, 1, "entropy_out"))))
        return NULL;
    const int64_t L = PyArray_DIM(r, 1), n = PyArray_DIM(ri, 0);
    if (!PyArray_Check(lab_o) || PyArray_TYPE(lab) != NPY_INT64 || PyArray_NDIM(lab) != 1 ||
        !PyArray_IS_C_CONTIGUOUS(lab) || !PyArray_ISWRITEABLE(lab) || PyArray_DIM(lab, 0) != n ||
        (h && PyArray_DIM(h, 0) != n) || (m && PyArray_DIM(m, 0) != n) || len < 1 || off < 0 ||
        (pos ? PyArray_DIM(pos, 0) != len : off + len > L)) {
        PyErr_SetString(PyExc_ValueError, "tta_cached: shapes do not match");
        return NULL;
    }
    if (in_range(ri, 0, PyArray_DIM(r, 0), "row_index") || (pos && in_range(pos, 0, L - off, "pos")))
        return NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = dnm_tta_cached((const double *)PyArray_DATA(r), L, off, len,
                        pos ? (const int64_t *)PyArray_DATA(pos) : NULL,
                        (const int64_t *)PyArray_DATA(ri), n,
                        m ? (const double *)PyArray_DATA(m) : NULL, (int64_t *)PyArray_DATA(lab),
                        h ? (double *)PyArray_DATA(h) : NULL, nt);
    Py_END_ALLOW_THREADS
    if (rc != DNM_OK) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *py_rows_mean(PyObject *self, PyObject *args)
{
    PyObject *a_o, *out_o, *ck_o = Py_None;
    long long n, every = 0, valid = 0;
    int nt;
    PyArrayObject *a, *out, *ck = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "OLOi|OLL", &a_o, &n, &out_o, &nt, &ck_o, &every, &valid) ||
        !(a = queue_array(a_o, 0, "a")) || !(out = f64_array(out_o, 1, 1, "out")) ||
        (ck_o != Py_None && !(ck = f64_array(ck_o, 2, 1, "ckpt"))))
        return NULL;
    if (n < 1 || n > PyArray_DIM(a, 0) || PyArray_DIM(out, 0) != PyArray_DIM(a, 1) ||
        (ck && (every < 1 || valid < 0 || PyArray_DIM(ck, 1) != PyArray_DIM(a, 1) ||
                PyArray_DIM(ck, 0) < n / every))) {
        PyErr_SetString(PyExc_ValueError, "rows_mean: need 1 <= n <= rows, out of a's width and "
                                          "ckpt (n // every or more rows of a's width)");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    dnm_rows_mean(PyArray_DATA(a), PyArray_TYPE(a) == NPY_FLOAT32, n, PyArray_DIM(a, 1),
                  (double *)PyArray_DATA(out), ck ? (double *)PyArray_DATA(ck) : NULL, every,
                  valid, nt);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}
