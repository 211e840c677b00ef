"""Representation metrics: geometry, similarity, linear decodability and collapse per layer.

Computed by :mod:`depthlens.repr` on a capped, seeded sample of states (token states of
LMs and encoders, pooled sentence vectors, or globally pooled image features per block).
"""

from __future__ import annotations

from depthlens.metrics.records import MetricRecord, Paper, metric

SHAPE_OF_LEARNING = Paper(
    "Razzhigaev et al.",
    2023,
    "The Shape of Learning: Anisotropy and Intrinsic Dimensions in Transformer-Based Models",
    "2311.05928",
)
TWONN = Paper(
    "Facco, d'Errico, Rodriguez, Laio",
    2017,
    "Estimating the intrinsic dimension of datasets by a minimal neighborhood information",
    "1803.06992",
)
KORNBLITH = Paper(
    "Kornblith, Norouzi, Lee, Hinton",
    2019,
    "Similarity of Neural Network Representations Revisited",
    "1905.00414",
)
NGUYEN = Paper(
    "Nguyen, Raghu, Kornblith",
    2021,
    "Do Wide and Deep Networks Learn the Same "
    "Things? Uncovering How Neural Network Representations Vary with Width and "
    "Depth",
    "2010.15327",
)
ILC = Paper("Uselis, Oh", 2025, "Intermediate Layer Classifiers for OOD Generalization")
DSN = Paper("Lee, Xie, Gallagher, Zhang, Tu", 2015, "Deeply-Supervised Nets", "1409.5185")
PAPYAN = Paper(
    "Papyan, Han, Donoho",
    2020,
    "Prevalence of neural collapse during the terminal phase of deep learning training",
    "2008.08186",
)
LING_COLLAPSE = Paper(
    "Wu, Papyan",
    2024,
    "Linguistic Collapse: Neural Collapse in (Large) Language Models",
    "2405.17767",
)

_SAMPLE = "states of a seeded sample of at most --max-samples examples, kept in memory"

ANISOTROPY = metric(
    MetricRecord(
        name="anisotropy",
        family="repr",
        definition="mean cos(x_i, x_j) over all pairs i ≠ j of the sampled states at layer l",
        papers=(SHAPE_OF_LEARNING,),
        shape="layer",
        accumulate=_SAMPLE,
        finalize="(‖Σ u_i‖² − Σ‖u_i‖²) / (n(n−1)) with u_i = x_i/‖x_i‖, float64",
        label="aniso",
        caption=(
            "Near 1: all states point one way (a common direction dominates); near 0: isotropic."
        ),
    )
)
ANISOTROPY_CENTRED = metric(
    MetricRecord(
        name="anisotropy_centred",
        family="repr",
        definition="anisotropy after subtracting the sample mean state of layer l",
        papers=(SHAPE_OF_LEARNING,),
        shape="layer",
        accumulate=_SAMPLE,
        finalize="as anisotropy, on x_i − mean(x)",
        label="aniso (centred)",
        caption="What is left once the common direction is removed.",
    )
)
INTRINSIC_DIM = metric(
    MetricRecord(
        name="intrinsic_dim",
        family="repr",
        definition="TwoNN: slope through 0 of −log(1 − F(μ)) vs log μ, μ_i = r2/r1 of each sampled "
        "state; the largest 10% of μ discarded",
        papers=(TWONN, SHAPE_OF_LEARNING),
        shape="layer",
        accumulate=_SAMPLE,
        finalize="least squares through the origin in float64; duplicates (r1 = 0) dropped and "
        "counted; intrinsic_dim_mle = (n−1)/Σ log μ_i beside it",
        label="ID (TwoNN)",
        caption="How many directions the states really vary along, locally.",
    )
)
PCA_DIM = metric(
    MetricRecord(
        name="pca_dim",
        family="repr",
        definition="smallest k whose top-k principal components explain ≥ 90% of the variance",
        papers=(SHAPE_OF_LEARNING,),
        shape="layer",
        accumulate=_SAMPLE,
        finalize="singular values of the centred sample, float64",
        label="PCA dim 90%",
        caption="The linear dimension: large when variance is spread over many directions.",
    )
)
CKA = metric(
    MetricRecord(
        name="cka",
        family="repr",
        definition="linear CKA between layers l and k (of one or two models) on the same inputs: "
        "mean_b HSIC_1(K_b,L_b) / sqrt(mean_b HSIC_1(K_b,K_b) · mean_b HSIC_1(L_b,L_b))",
        papers=(KORNBLITH, NGUYEN),
        shape="layer_pair",
        accumulate="per minibatch of --cka-batch examples: unbiased HSIC_1 of the linear Gram "
        "matrices for every layer pair, summed in float64 (memory flat in examples)",
        finalize="ratio of the mean HSICs",
        plot="heatmap",
        label="CKA",
        caption="1: the two layers carry the same information up to rotation and scale.",
        deviation="minibatch estimator (Nguyen et al.) rather than full-batch CKA; with one "
        "batch holding every example it is the full-batch unbiased CKA",
    )
)
PROBE_ACC = metric(
    MetricRecord(
        name="probe_acc",
        family="repr",
        definition="accuracy on the held-out split of a linear probe (multinomial logistic "
        "regression, L2) fitted on layer-l features of the training split",
        papers=(ILC, DSN),
        shape="layer",
        accumulate=_SAMPLE + " (train, test, OOD splits)",
        finalize="standardised features, L-BFGS, float64; argmax accuracy",
        label="probe acc",
        caption="Where the label is linearly decodable; compare the peak with the last layer.",
    )
)
PROBE_ACC_OOD = metric(
    MetricRecord(
        name="probe_acc_ood",
        family="repr",
        definition="accuracy of the same probe on each out-of-distribution split (corruptions)",
        papers=(ILC,),
        shape="layer",
        accumulate=_SAMPLE,
        finalize="per corruption, and their mean",
        label="probe acc OOD",
        caption="Intermediate layers often transfer better out of distribution than the last.",
    )
)
NC1 = metric(
    MetricRecord(
        name="nc1",
        family="repr",
        definition="tr(Σ_W Σ_B⁺)/C on the training features of layer l (μ_G the global mean)",
        papers=(PAPYAN, LING_COLLAPSE),
        shape="layer",
        accumulate=_SAMPLE,
        finalize="‖E M⁺‖²_F / N, E within-class deviations, M centred class means; float64",
        label="NC1",
        caption="Within-class spread relative to between-class spread; 0 = collapse.",
    )
)
NC2_EQUINORM = metric(
    MetricRecord(
        name="nc2_equinorm",
        family="repr",
        definition="std_c ‖μ_c − μ_G‖ / mean_c ‖μ_c − μ_G‖",
        papers=(PAPYAN,),
        shape="layer",
        accumulate=_SAMPLE,
        finalize="float64",
        label="NC2 equinorm",
        caption="0: every class mean is equally far from the global mean.",
    )
)
NC2_EQUIANGULAR = metric(
    MetricRecord(
        name="nc2_equiangular",
        family="repr",
        definition="std over c ≠ c' of cos(μ_c − μ_G, μ_c' − μ_G); nc2_max_angle = mean |cos + "
        "1/(C−1)| beside it",
        papers=(PAPYAN,),
        shape="layer",
        accumulate=_SAMPLE,
        finalize="float64",
        label="NC2 equiangular",
        caption="0: class means are equiangular (a simplex when the mean cosine is −1/(C−1)).",
    )
)
GRIDE_PAPER = Paper(
    "Denti, Doimo, Laio, Mira",
    2022,
    "The generalized ratios intrinsic dimension estimator",
    "2104.13832",
)
GRIDE = metric(
    MetricRecord(
        name="gride",
        family="repr",
        definition="GRIDE: maximum-likelihood dimension from μ = r_{2k}/r_k at k = 1, 2, 4, … "
        "(intrinsic dimension against the neighbourhood scale); k = 1 is TwoNN's MLE",
        papers=(GRIDE_PAPER,),
        shape="layer",
        accumulate=_SAMPLE,
        finalize="bisection of the score equation on [0.001, 1000] (DADApy's solver), μ above "
        "20·(q95 − q50) + q50 dropped; exact duplicates dropped and counted",
        label="ID (GRIDE)",
        caption="Intrinsic dimension at growing neighbourhood scales; flat = one dimension.",
    )
)
