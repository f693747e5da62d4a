/* metrics.h - ranking metrics for OOD detection (docs/design.md, "Metrics"): AUROC, AUPR-In,
 * AUPR-Out and FPR at a target TPR under three conventions, all from one sort
 * and one pass over the distinct score values.  Higher score = more
 * in-distribution; ID is the positive class unless stated. */
#ifndef DNM_METRICS_H
#define DNM_METRICS_H
#include "common.h"

typedef struct {
    double auroc;       /* ties count half (= sklearn roc_auc_score) */
    double aupr_in;     /* average precision, ID positive */
    double aupr_out;    /* average precision, OOD positive, negated scores */
    double fpr_paper;   /* OOD share >= the threshold whose ID recall is nearest tpr */
    double fpr_openood; /* ID share flagged OOD at the first ROC point catching >= tpr of OOD */
    double fpr_interp;  /* FPR interpolated on the ID-positive ROC at TPR = tpr */
    int64_t n_thresholds; /* number of distinct score values */
} dnm_metrics_result;

/* id[0..n_id) and ood[0..n_ood) are finite float64 scores (not modified);
 * n_id, n_ood >= 1; 0 < tpr <= 1.  Sorts copies (LSD radix sort on the IEEE
 * bit pattern, O(n)), in two OpenMP threads when nthreads >= 2.  tick (may be
 * NULL) is called on the calling thread every 2^20 elements of work (a few ms)
 * with (0, 0), for cancellation only: nonzero stops with DNM_ECANCEL.
 * Errors: DNM_ENONFINITE (err->which = 0 for id, 1 for ood; err->row = index;
 * err->value = the value), DNM_ENOMEM, DNM_EDOMAIN (bad sizes or tpr), DNM_ECANCEL. */
int dnm_metrics(const double *id, int64_t n_id, const double *ood, int64_t n_ood, double tpr,
                int nthreads, dnm_tick_fn tick, void *tick_ctx, dnm_metrics_result *out,
                dnm_error *err);

#endif
