/*
 * Internal structures of the training engine: a model is a list of nodes in
 * topological order (nested models flattened into it), weight slots viewing
 * one flat parameter buffer, and top-level layer entries that group them the
 * way Keras lists layers and weights.
 */
#ifndef DDTS_NN_NN_H
#define DDTS_NN_NN_H

#include <stddef.h>
#include <stdint.h>

#include "ddts/nn.h"
#include "nn/recurrent.h"

enum nn_kind {
    NN_INPUT,
    NN_DENSE,
    NN_CONV2D,
    NN_CONV2DT,
    NN_MAXPOOL,
    NN_AVGPOOL,
    NN_GAP,
    NN_GMP,
    NN_FLATTEN,
    NN_RESHAPE,
    NN_DROPOUT,
    NN_ACTIVATION,
    NN_BATCHNORM,
    NN_UPSAMPLE,
    NN_ZEROPAD,
    NN_ADD,
    NN_AVERAGE,
    NN_SUBTRACT,
    NN_MULTIPLY,
    NN_CONCAT,
    NN_DOT,    /* Dot: batched dot product over one axis of each input */
    NN_CONV3D, /* Conv3D over (D, H, W, C) */
    NN_POOL3D, /* MaxPooling3D, AveragePooling3D */
    NN_NORMALIZATION,
    NN_RESCALING,
    NN_EMBEDDING,
    NN_LAYERNORM,
    NN_DEPTHWISE,
    NN_SEPARABLE,
    NN_MHA,
    NN_LUONG,
    NN_RNN,       /* SimpleRNN, LSTM, GRU (layer_recurrent.c); Bidirectional is two plus a merge */
    NN_MASKING,   /* Masking: zeroes masked steps and starts a mask */
    NN_REPEAT,    /* RepeatVector: (F) -> (n, F) */
    NN_RNN_STATE, /* a recurrent layer's final state h or c (return_state's extra outputs) */
    NN_PRELU,     /* PReLU: learned negative slopes (layer_activation.c) */
    NN_PERMUTE,   /* Permute: per-sample axes reordered (layer_reshape.c) */
    NN_MAXIMUM,   /* Maximum, Minimum: element-wise over the inputs (layer_merge.c) */
    NN_MINIMUM,
    NN_NOISE,    /* GaussianNoise, GaussianDropout (training only; layer_dropout.c) */
    NN_ADDITIVE, /* AdditiveAttention, Attention(score_mode concat) (layer_attention.c) */
    NN_NAMED,    /* a class known by name only (its files' weight names), not built */
};

enum nn_act_kind {
    ACT_LINEAR,
    ACT_RELU, /* with alpha (negative slope), max_value, threshold */
    ACT_SIGMOID,
    ACT_TANH,
    ACT_SOFTMAX,
    ACT_ELU,
    ACT_SELU,
    ACT_SOFTPLUS,
    ACT_SOFTSIGN,
    ACT_SWISH,
    ACT_GELU,
    ACT_GELU_TANH,
    ACT_HARD_SIGMOID, /* max(0, min(1, slope * x + 0.5)) */
    ACT_EXPONENTIAL,
    ACT_HARD_SWISH,
    ACT_MISH,
};

struct nn_act {
    enum nn_act_kind kind;
    float alpha;     /* relu negative slope, elu alpha, hard_sigmoid slope */
    float max_value; /* relu cap; <= 0: none */
    float threshold; /* relu threshold */
};

enum nn_init_kind {
    INIT_ZEROS,
    INIT_ONES,
    INIT_CONSTANT,
    INIT_RANDOM_NORMAL,
    INIT_RANDOM_UNIFORM,
    INIT_TRUNCATED_NORMAL,
    INIT_VARIANCE_SCALING,
    INIT_ORTHOGONAL,
    INIT_IDENTITY,
};
enum { FAN_IN, FAN_OUT, FAN_AVG };
enum { DIST_TRUNCATED, DIST_NORMAL, DIST_UNIFORM };

struct nn_init {
    enum nn_init_kind kind;
    double a, b; /* constant value; mean/stddev; minval/maxval; scale (VS); gain */
    int mode, dist;
    int unit_forget; /* LSTM bias: the forget block (second quarter) set to ones after */
};

struct nn_reg {
    double l1, l2;
};

struct nn_weight {
    char *name;       /* "kernel" */
    char *layer_name; /* owner layer, borrowed from its node */
    int node;
    int rank;
    int64_t shape[DDTS_MAX_RANK];
    size_t n;   /* floats */
    size_t off; /* in the flat buffer */
    int trainable;
    struct nn_init init;
    struct nn_reg reg;
};

struct nn_layer_ops; /* nn/layer.h */

struct nn_node {
    char *name;
    char *class_name;
    const struct nn_layer_ops *ops; /* its family's descriptor (nn/layer.h) */
    enum nn_kind kind;
    int entry; /* top-level entry, -1 for an implicit input */
    int n_in;
    int *in; /* input node indices */
    int n_consumers;
    int needs_grad; /* dy must be computed */
    int rank;       /* per-sample output shape, batch excluded */
    int64_t shape[DDTS_MAX_RANK];
    size_t size; /* per-sample output elements */
    struct nn_act act;
    int trainable;

    /* Dense/Conv/Pool geometry */
    int units, use_bias;
    int depth_mult;                /* depthwise/separable: depth_multiplier */
    int heads, key_dim, value_dim; /* MultiHeadAttention */
    int kh, kw, sh, sw, dh, dw, same;
    int pt, pl, pb, pr;
    int kd, sd, dd, pf;   /* 3-D windows: depth kernel, stride, dilation, front padding */
    int avg;              /* 3-D pooling: average (else max) */
    float rate;           /* dropout */
    uint64_t drop_key;    /* Dropout: this step's mask key (ddts__nn_dropout_fill) */
    float eps, momentum;  /* batch norm */
    int center, scale;    /* batch norm */
    float r_scale, r_off; /* rescaling */
    int invert;           /* Normalization(invert=True): y = mean + x * max(sqrt(var), eps) */
    int axis;             /* concatenate: per-sample axis */
    int keras_axis;       /* concatenate: the config's axis (batch included) */
    int dot_axes[2];      /* Dot: the config's axes (batch included, may be negative) */
    int normalize;        /* Dot: l2-normalize both inputs along their axes first */
    int keepdims;         /* global pooling */
    int pool1d;           /* global pooling over (T, C) instead of (H, W, C) */
    int chfirst;          /* GlobalAveragePooling1D channels_first: mean over the last axis */
    int dim1;             /* Conv1D / pooling 1D: (T, C) seen as (1, T, C) */
    int chunk;            /* conv: images per im2col chunk */
    int dchunk;           /* conv: images per input-gradient (dcol) chunk */
    int direct;           /* conv: direct kernels (short windows), no im2col GEMM */
    int w0, n_w;          /* weight slots w0 .. w0 + n_w - 1 */
    /* Shared layers (a layer called several times): each call is its own
     * node with its own buffers; a later call's node has share_of = 1 + the
     * first call's node and uses that node's weight slots (w0, n_w); the
     * first call's node counts the later ones in n_calls. */
    int share_of, n_calls;

    /* sequences (layer_recurrent.c) */
    struct ddts__rnn_spec rnn; /* recurrent cell settings */
    struct nn_act cell_act;    /* the cell's activation (nd->act stays linear) */
    struct nn_act ract;        /* recurrent activation */
    int mask_src;              /* 1 + the node that starts this node's input mask; 0: none */
    int mask_zero;             /* Embedding: id 0 is masked */
    float mask_value;          /* Masking */
    int spatial;               /* SpatialDropout1D: one draw per (sample, channel) */
    int repeat;                /* RepeatVector n */
    int return_state;          /* recurrent: its final states are outputs too (state_out) */
    int state_out[2];          /* recurrent: 1 + the node of its final state h, c; 0: none */
    int state_which;           /* NN_RNN_STATE: 0 h, 1 c (of its input, a recurrent node) */
    float *scratch;            /* recurrent: planned scratch (ddts__rnn_scratch_floats) */
    unsigned free_dims;        /* bit i: output axis i follows an input dimension that was None */
    unsigned shared_axes;      /* PReLU: bit i, per-sample axis i shares one alpha */
    int perm[DDTS_MAX_RANK];   /* Permute: output axis i is input axis perm[i] (per sample) */
    int norm_axis;             /* LayerNormalization: first normalized per-sample axis */
    int score_concat;          /* Attention score_mode concat (use_scale in nd->scale) */
    int causal;                /* attention: use_causal_mask (or Attention's causal) */
    int attn_mask;             /* MultiHeadAttention: its last input is the attention_mask */
    int vmask_src, kmask_src;  /* attention: 1 + the node starting the value's, key's mask */
    int gauss_mult;            /* GaussianDropout (multiplicative); else GaussianNoise */

    /* buffers planned for the model's batch capacity: (cap, size) each */
    float *z;      /* pre-activation; == y when the activation is linear */
    float *y;      /* output */
    float *dy;     /* gradient of the loss w.r.t. y */
    float *dz;     /* gradient w.r.t. z; == dy when linear */
    float *aux;    /* dropout mask, pooling argmax (as int32) */
    float *aux2;   /* BN batch mean, inverse std and three scratch rows (5 C) */
    float *colbuf; /* a layer's own kept buffer (attention: dS k for the backward pass) */
    int own_y, own_z, own_dz;
    int act_done;     /* the forward pass already applied the activation */
    int pool_relu;    /* max pooling that also applies its input's relu backward */
    int skip_act_bwd; /* relu backward done by the max pooling that consumes it */
    int pool_node;    /* direct conv: the max pooling it computes too (0: none) */
    int in_conv;      /* max pooling computed by the convolution before it */
    int act_node;     /* BatchNormalization: 1 + the ReLU node it computes too (0: none) */
    int act_in_prev;  /* ReLU computed by the BatchNormalization before it */
    /* Conv2D: the output rows and columns computed and stored, packed as
     * (n, crop_h, crop_w, F): those its max pooling reads (0: all) */
    int crop_h, crop_w;
};

/* The most outputs one layer has: Bidirectional(LSTM(return_state)) with
 * merge_mode=None gives two sequences and four states. */
#define NN_MAX_LAYER_OUTPUTS 6

struct nn_entry {
    char *name;
    char *class_name;
    int node_out; /* node giving its (first) output shape */
    int n_out;    /* outputs when several (node_outs, tensor index order); else 0 */
    int node_outs[NN_MAX_LAYER_OUTPUTS];
    size_t n_w;
    int *w; /* weight slots in Keras order */
};

enum nn_loss_kind {
    LOSS_SPARSE_CCE,
    LOSS_CCE,
    LOSS_BCE,
    LOSS_MSE,
    LOSS_MAE,
    LOSS_MAPE,
    LOSS_MSLE,
    LOSS_HUBER,
    LOSS_KLD,
    LOSS_HINGE,
    LOSS_SQUARED_HINGE,
    LOSS_LOGCOSH,
    LOSS_POISSON,
};

struct nn_loss {
    enum nn_loss_kind kind;
    int from_logits;
    double label_smoothing;
    double delta; /* huber */
};

enum nn_opt_kind {
    OPT_SGD,
    OPT_ADAM,
    OPT_ADAMW,
    OPT_RMSPROP,
    OPT_ADAGRAD,
    OPT_ADADELTA,
    OPT_ADAMAX,
    OPT_NADAM
};

struct nn_opt {
    enum nn_opt_kind kind;
    double lr, beta1, beta2, eps, momentum, rho, weight_decay, initial_accumulator;
    int nesterov, amsgrad, centered;
    double clipnorm, clipvalue, global_clipnorm; /* <= 0: off */
    size_t n_state_vec;                          /* state vectors of n_params floats each */
    float *state; /* n_state_vec * n_params (+ 1 for Nadam's momentum product) */
    size_t n_state;
};

enum { ACC_NONE, ACC_BINARY, ACC_CATEGORICAL, ACC_SPARSE };
enum { MET_ACCURACY = 1, MET_MSE = 2, MET_MAE = 4 };

/* A batch's loss figures, each a sum over its rows (ddts__nn_loss_rows). */
struct ddts__nn_loss_sums {
    double loss;  /* the rows' losses */
    double units; /* the same in y's own units (figures_in_y_units), else loss */
    double acc, mse, mae;
    size_t rows;
};

/* One thread's part of a batch-split pass (train.c). */
struct nn_split_part {
    struct ddts__nn_loss_sums sums;
    long bad; /* its first target value that is not a class index (an index into
                 the batch's targets), or -1 */
};

/*
 * The batch split (docs/engine.md, "Threads and determinism"): with several
 * threads, a model whose every layer works on each sample's rows alone
 * (nn_layer_ops.rows) runs a training step as one parallel region in which
 * each thread takes a block of the batch through gather, forward, loss and
 * backward in its own view of the model (every buffer from its first sample
 * on, its own weight gradients), then sums the threads' gradients of its
 * slice of the parameters in thread order and updates that slice. Planned by
 * model.c for the planned thread count (n 0: the model does not split).
 */
struct nn_split {
    int n;                       /* threads planned for */
    struct ddts_model *views;    /* n per-thread views (ddts__nn_split_view) */
    struct nn_node *nodes;       /* n x n_nodes: the views' nodes */
    float *grads;                /* (n - 1) x n_params: threads 1 .. n-1's weight gradients */
    struct nn_split_part *parts; /* n */
    double macs;                 /* forward multiply-adds per sample (ddts__nn_flops) */
    int draws;                   /* some layer draws random numbers (nn_layer_ops.draw) */
    uint64_t steps;              /* training steps run split (tests) */
};

struct ddts_model {
    char *name;
    int keras3;
    struct nn_node *nodes;
    size_t n_nodes, cap_nodes;
    struct nn_weight *w;
    size_t n_w, cap_w;
    struct nn_entry *entries;
    size_t n_entries, cap_entries;
    int input_node, output_node; /* input_node == input_nodes[0] */
    /* The model's inputs in its config's input_layers order. A sample of a
     * model with several is the concatenation of their flattened samples in
     * this order (the data path packs them: ddts_array_hstack). */
    int input_nodes[DDTS_MAX_INPUTS];
    int n_inputs;

    float *params, *grads; /* n_params each */
    float *gshare;         /* n_params: the gradient of one call of a shared layer (NULL: none) */
    size_t n_params, n_trainable;

    /* compile */
    int compiled;
    struct nn_loss loss;
    const char *loss_name;
    struct nn_opt opt;
    const char *opt_name;
    int metrics;  /* MET_* bits */
    int acc_kind; /* ACC_* for the accuracy metric */
    char acc_name[16];
    int threads;
    uint64_t iterations;
    int fused;    /* the loss reads the output node's z (softmax/sigmoid logits) */
    int has_reg;  /* some weight has a regularizer */
    int training; /* current pass is a training pass */
    struct ddts_rng drop_rng;
    int drawn;   /* the batch's random draws are made (a batch-split view) */
    size_t row0; /* a batch-split view's first row of the batch (0 otherwise) */

    /* plan */
    size_t cap;       /* batch capacity of the buffers */
    int plan_threads; /* the thread count the buffers were planned for */
    float *target;    /* (cap, target_size) */
    size_t target_size;
    float *col; /* im2col scratch */
    size_t col_n;
    int conv_gemm_only; /* set before planning: no direct convolutions (tests) */
    double *tmp;        /* per-channel scratch in double (batch norm sums) */
    size_t tmp_n;
    float *ones; /* ones_n ones: bias gradients as one GEMM */
    size_t ones_n;
    struct nn_split split; /* the batch split's views and buffers (n 0: none) */
    int no_batch_split;    /* the GEMM split only, even where the batch split applies
                              (tests, benchmarks: compare the two) */

    /* Figures in the targets' own units (ddts_dataset.figures_in_y_units): set by
     * fit and evaluate for the data at hand (borrowed, o->size values each; NULL:
     * none), with a scratch of two output rows; the loss of the last
     * ddts__nn_loss in those units. */
    const float *units_offset, *units_scale;
    float *units_row;
    size_t units_row_n;
    double units_loss;

    float *best;
    int best_epoch;
    int best_valid;    /* best/best_value hold a result of this training */
    double best_value; /* the monitored value of `best` */
    char best_monitor[32];
};

/* (H, W, C) of a convolution or pooling node's per-sample image; 1-D layers
 * see their (T, C) as (1, T, C). */
static inline int64_t nn_h(const struct nn_node *x)
{
    return x->rank == 2 ? 1 : x->shape[0];
}
static inline int64_t nn_w(const struct nn_node *x)
{
    return x->rank == 2 ? x->shape[0] : x->shape[1];
}
static inline int64_t nn_c(const struct nn_node *x)
{
    return x->shape[x->rank - 1];
}

/* layer_recurrent.c: a node's received mask as (b, T) floats, 1 for a step
 * that counts (nd->mask_src names the node that started it) */
void ddts__nn_mask(const struct ddts_model *m, const struct nn_node *nd, size_t b, float *out);
/* The same for the mask that node src - 1 starts (src: a mask_src value). */
void ddts__nn_mask_of(const struct ddts_model *m, int src, size_t b, float *out);

/* A None input dimension's size until data binds it: large enough for the
 * windows of 1-D convolutions and poolings over it. */
#define DDTS_FREE_DIM_PLACEHOLDER 64

/* model.c: building (used by config.c); a node's class lives in its descriptor (layer.h) */
enum ddts_status ddts__nn_add_node(struct ddts_model *m, const char *name, const char *class_name,
                                   const struct nn_layer_ops *ops, int entry, const int *in,
                                   int n_in, int *out_idx, struct ddts_error *err);
enum ddts_status ddts__nn_add_weight(struct ddts_model *m, int node, const char *name, int rank,
                                     const int64_t *shape, int trainable,
                                     const struct nn_init *init, struct ddts_error *err);
enum ddts_status ddts__nn_add_entry(struct ddts_model *m, const char *name, const char *class_name,
                                    int *out_idx, struct ddts_error *err);
/* Call `call` (>= 1) of a layer, nodes call_first .. call_first + count - 1,
 * built after its first call (nodes own_first ..): node by node the same
 * kinds and weight shapes, so the call's nodes take the first call's weight
 * slots and the slots they added (w_from on, the last ones) are dropped. */
enum ddts_status ddts__nn_share_call(struct ddts_model *m, int own_first, int call_first, int count,
                                     size_t w_from, int call, struct ddts_error *err);
/* Shapes of node `i` from its inputs and settings. */
enum ddts_status ddts__nn_infer_shape(struct ddts_model *m, int i, struct ddts_error *err);
/* After all nodes: entries' weight lists, flat buffer, consumers. */
enum ddts_status ddts__nn_finalize(struct ddts_model *m, struct ddts_error *err);
/* Buffers for batch capacity `cap`. */
enum ddts_status ddts__nn_plan(struct ddts_model *m, size_t cap, struct ddts_error *err);
/* Thread t's view of the planned model for the batch split: every node's
 * buffers (and the targets) from sample `lo` on, its own weight gradients
 * (thread 0: m->grads), one thread, the batch's draws made. The view is
 * valid until the next plan; its nodes are copied afresh on each call. */
struct ddts_model *ddts__nn_split_view(struct ddts_model *m, int t, size_t lo);

/* activations.c */
void ddts__nn_act_forward(const struct nn_act *a, size_t rows, size_t k, const float *z, float *y,
                          int threads);
/* y = act(z) over n floats in this thread (y may be z; not softmax):
 * sigmoid and tanh vectorised (ddts__tensor_vsigmoid, _vtanh). */
void ddts__nn_act_apply(const struct nn_act *a, size_t n, const float *z, float *y);
/* dz = dy * act'(z); may alias dz == dy. */
void ddts__nn_act_backward(const struct nn_act *a, size_t rows, size_t k, const float *z,
                           const float *y, const float *dy, float *dz, int threads);
/* Parses an activation name; -1 if unknown. keras3 selects Keras 3's hard_sigmoid. */
int ddts__nn_act_parse(const char *name, int keras3, struct nn_act *out);

/* layer.c: the forward and backward passes over all nodes for batch b */
/* A dropout mask of n values: 1 / (1 - rate) with probability 1 - rate,
 * else 0, from 32-bit draws of rng (layer_dropout.c); 0 <= rate < 1. */
void ddts__nn_dropout_mask(struct ddts_rng *rng, float *mask, size_t n, float rate);
/* Values [i0, i0 + n) of the dropout mask of `key` into mask[0, n): any
 * part of a mask, computed by any thread, equals that part of the whole. */
void ddts__nn_dropout_fill(uint64_t key, float *mask, size_t i0, size_t n, float rate);
/* Analytic FLOPs per sample (2 per multiply-add) of one training step's
 * matrix products, from the layer shapes: the forward products, the weight
 * gradients of trainable weights, and the input gradients that the engine
 * computes (none for the model's input). Layers with weights that are not
 * one GEMM (recurrent, attention, normalisation, depthwise) are not counted:
 * n_uncounted says how many there are (the figures are then a lower bound). */
struct ddts__nn_flops {
    double forward, weight_grad, input_grad;
    size_t n_uncounted;
};
void ddts__nn_flops(const struct ddts_model *m, struct ddts__nn_flops *out);
void ddts__nn_forward(struct ddts_model *m, size_t b);
/* Every node's random draws for a training batch of b samples, in node order
 * (nn_layer_ops.draw): what the forward pass would draw. */
void ddts__nn_draw(struct ddts_model *m, size_t b);
void ddts__nn_backward(struct ddts_model *m, size_t b);
/* The backward pass with a hook called after each node ii (last to first,
 * every node, also those without a backward): the weight gradients of nodes
 * ii .. n_nodes - 1 are then final for this batch (a node's backward writes
 * its own weight slots only; a shared layer's slots belong to the node of its
 * first call, which comes before its other calls' nodes, so the sum over the
 * calls is complete when that node is done). */
typedef void (*ddts__nn_node_done_fn)(void *userdata, struct ddts_model *m, size_t ii);
void ddts__nn_backward_each(struct ddts_model *m, size_t b, ddts__nn_node_done_fn done,
                            void *userdata);

/* losses.c */
int ddts__nn_loss_parse(const char *name, struct nn_loss *out);
const char *ddts__nn_loss_name(enum nn_loss_kind k);
/* Mean loss over the batch; writes the output gradient (dz when fused, else dy)
 * when grad is non-zero; metrics sums into met[] (accuracy, mse, mae counts). */
double ddts__nn_loss(struct ddts_model *m, size_t b, int grad, double *acc_sum, double *mse_sum,
                     double *mae_sum, size_t *rows);
/* The figures of b samples added into *out; with grad, the output gradient of
 * the mean over the rows of b_all samples (the batch; a batch-split thread's
 * b samples are a block of it). */
void ddts__nn_loss_rows(struct ddts_model *m, size_t b, size_t b_all, int grad,
                        struct ddts__nn_loss_sums *out);

/* optim.c */
int ddts__nn_opt_parse(const char *name, struct nn_opt *out);
const char *ddts__nn_opt_name(enum nn_opt_kind k);
enum ddts_status ddts__nn_opt_alloc(struct ddts_model *m, struct ddts_error *err);
/* One update from m->grads (regularization, clipping, the optimizer). */
void ddts__nn_opt_step(struct ddts_model *m);
/* The same in parts, for the batch split: the step's constants from the state
 * before it (reads only: any thread may call it); the update of the
 * parameters [lo, hi) of the flat buffer on nt threads, elementwise, so that
 * any split of the range gives the bits of one call over all of it; then,
 * once the whole range is updated, the optimizer's own state advances.
 * Splits only without clipnorm and global_clipnorm (norms over a whole
 * weight or all of them): ddts__nn_opt_splits. */
struct ddts__nn_opt_k {
    float lr, b1, b2, eps, mom, rho, alpha_adam, lr_adamax, u_t, u_t1, up_t, up_t1, b2p;
    double gscale;  /* global_clipnorm's factor */
    int reg_here;   /* the update adds the regularization gradients */
    double nadam_p; /* Nadam's momentum product after this step */
};
int ddts__nn_opt_splits(const struct ddts_model *m);
void ddts__nn_opt_consts(const struct ddts_model *m, struct ddts__nn_opt_k *k);
void ddts__nn_opt_apply(struct ddts_model *m, const struct ddts__nn_opt_k *k, size_t lo, size_t hi,
                        int nt);
void ddts__nn_opt_advance(struct ddts_model *m, const struct ddts__nn_opt_k *k);

/* config.c: the parts of a Keras training_config that compile uses */
struct ddts__nn_tc {
    char loss[64];
    int from_logits;
    double label_smoothing;
    double delta;
    int have_loss;
    char opt[32];
    int have_opt;
    struct nn_opt optc;
    int have_metrics;
    int metrics;
};

enum ddts_status ddts__nn_parse_training_config(const char *json, int keras3,
                                                struct ddts__nn_tc *tc, struct ddts_error *err);

/* init.c */
enum ddts_status ddts__nn_init_weight(struct ddts_model *m, struct nn_weight *w,
                                      struct ddts_rng *rng, struct ddts_error *err);

#endif
