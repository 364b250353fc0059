/*
 * Layers: one descriptor per Keras layer class family, one registry.
 *
 * Everything ddts knows about a layer class lives in one family file under
 * src/nn/ (layer_dense.c, layer_conv.c, layer_pool.c, layer_norm.c,
 * layer_reshape.c, layer_merge.c, layer_activation.c, layer_dropout.c,
 * layer_embedding.c, layer_recurrent.c, layer_depthwise.c, layer_attention.c,
 * layer_conv3d.c): its Keras class
 * names, how its config is parsed, its weights in Keras' order, its shape, the buffers it plans,
 * its forward and backward pass, and the words `ddts model new
 * --layers` knows it by. Each family exports `struct nn_layer_ops`
 * descriptors; `ddts__nn_families` (layer.c) lists them all. The config reader
 * (config.c), the planner and the passes (model.c, layer.c), the Keras file
 * code (src/io/keras_*.c: weight names, the spec builder) and `ddts inspect`
 * consult this one table; nothing else switches on layer classes. kann's
 * kad_op_list is the model: one table of operators, each a compact unit.
 *
 * A tour: how the `Dense` class flows through the engine.
 *
 *   const struct nn_layer_ops *d = ddts__nn_layer_find("Dense");
 *   config.c    adds a node with kind d->kind and nd->ops = d, then
 *               d->parse(&p, nd)          units, use_bias, activation
 *               d->infer_shape(m, nd, err) (..., in) -> (..., units)
 *               d->add_weights(&p, nd)    kernel (in, units), bias (units)
 *   model.c     d->plan(m, i, cap, &need) buffers of its own; shared scratch
 *                                         needs (ones for bias gradients)
 *   layer.c     d->forward(m, nd, b)      z = x W + b (then the activation)
 *               d->backward(m, nd, b)     dW, db, dx from dz
 *   keras_*.c   d->weight_name(&f, j)     "kernel", "bias" (file reading)
 *               d->spec(&s)               "dense:128:relu" for `model new`
 *
 * Conventions for the hooks:
 *  - parse reads the layer's config only through the ddts__nn_cfg_*
 *    accessors below (config.c is the only user of jansson); every number is
 *    range-checked before it becomes an int, so `units: 1e30` is a clear
 *    DDTS_EFORMAT, not undefined behaviour.
 *  - infer_shape sets nd->rank and nd->shape (per sample, batch excluded)
 *    from its inputs; the caller checks the size limits.
 *  - add_weights adds weight slots (ddts__nn_cfg_weight) in Keras' order; the
 *    slots are nd->w0 .. nd->w0 + nd->n_w - 1.
 *  - plan allocates the node's own buffers beyond y/z/dy/dz (nd->aux,
 *    nd->aux2, nd->colbuf with ddts__nn_plan_buf) and raises the shared
 *    scratch it needs in `need` (the model's im2col scratch, the ones vector
 *    for bias gradients, per-channel doubles). Per-batch scratch of a new
 *    family goes here too: plan for `cap` samples, never allocate in a pass.
 *  - forward reads its inputs' y and writes nd->z (== nd->y when the
 *    activation is linear or applied in place); the engine applies nd->act
 *    afterwards unless the hook set nd->act_done.
 *  - backward reads nd->dz (the engine already applied the activation's
 *    derivative), writes the weight gradients and adds or writes its inputs'
 *    dy (ddts__nn_dx says which).
 *
 * Settings a family reads from its config live in struct nn_node (nn.h):
 * reuse its geometry fields (units, kh/kw, sh/sw, rate, eps...) or add
 * fields there. A class known by name only (kind NN_NAMED, parse NULL) has
 * just class_names, doc and weight_name: files with it are read with their
 * weights named, and the engine refuses to build it.
 *
 * Several inputs: min_in/max_in (merge layers take 1..NN_MAX_INPUTS);
 * nd->in[0 .. n_in) in call order. Several outputs (LSTM return_state) are
 * not supported yet: a node has one output; a multi-output family would add
 * an output index to nn_node.in references (config.c's collect_refs already
 * refuses tensor indices other than 0 with a clear message).
 *
 * Masks: a node's nd->mask_src names the node that started the mask it
 * receives (Embedding with mask_zero, Masking), set by config.c from what
 * each input emits; a consumer (recurrent layers, GlobalAveragePooling1D)
 * computes the (b, steps) mask with ddts__nn_mask (layer_recurrent.c) into
 * scratch its plan hook sized. The attention layers also take their value's
 * and key's masks (nd->vmask_src, nd->kmask_src) and their call arguments
 * (use_causal_mask in nd->causal, an attention_mask input: nd->attn_mask),
 * which config.c reads from the inbound node.
 *
 * Wrappers: Bidirectional and TimeDistributed have no descriptor; config.c
 * builds them from the descriptors of their inner layers (two recurrent
 * nodes and a merge node; the inner Dense, Dropout or Activation).
 */
#ifndef DDTS_NN_LAYER_H
#define DDTS_NN_LAYER_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "nn/nn.h"

/* Most inputs a merge layer takes. */
#define NN_MAX_INPUTS 256

/* A layer's config object (a JSON object held by config.c). */
struct nn_cfg;

/* What a parse hook works on: the model, the node being built and its config. */
struct nn_parse {
    struct ddts_model *m;
    struct ddts_error *err;
    const struct nn_cfg *cfg;
    int idx; /* the node */
};

/* Flags of a layer config that decide which weights it has (file readers). */
struct nn_weight_flags {
    int use_bias, center, scale;
};

/* Shared scratch a plan hook asks for (the largest request wins). */
struct nn_plan_need {
    size_t col_n;  /* floats of the model's im2col scratch (m->col) */
    size_t ones_n; /* ones for bias gradients as one GEMM (m->ones) */
    size_t tmp_n;  /* doubles of per-channel sums (m->tmp) */
    size_t kept;   /* floats of im2col kept across passes so far (conv) */
    int fail;      /* an allocation failed */
};

/* What a spec hook (`ddts model new --layers`) works with; the callbacks
 * belong to src/io/keras_spec.c, which writes the file. */
struct nn_spec {
    char **arg; /* arg[0] is the word ("dense"), then its fields */
    int n_arg;
    int rank; /* the layer's input shape on entry, its output shape on return */
    int64_t shape[DDTS_MAX_RANK];
    void *ctx;
    /* Names the layer (class, Keras' automatic base name) and opens its config. */
    enum ddts_status (*open)(struct nn_spec *s, const char *cls, const char *base);
    /* Appends ", key: value" text to the layer's config. */
    void (*json)(struct nn_spec *s, const char *fmt, ...) DDTS_PRINTF(2, 3);
    /* Adds a weight: fill 0 zeros, 1 ones, 2 glorot_uniform over (fan_in, fan_out). */
    enum ddts_status (*weight)(struct nn_spec *s, const char *short_name, int rank,
                               const int64_t *shape, int fill, double fan_in, double fan_out);
    /* Usage error naming the layer text: DDTS_EINVAL, or `st` with a message. */
    enum ddts_status (*fail)(struct nn_spec *s, enum ddts_status st, const char *fmt, ...)
        DDTS_PRINTF(3, 4);
};

struct nn_layer_ops {
    /* Keras class names: the canonical one first, then aliases; NULL ends. */
    const char *const *class_names;
    enum nn_kind kind;
    const char *doc; /* one line: what it computes (ddts inspect --layers, docs) */
    int min_in, max_in;
    /* Keras 3 variable `index` of a layer with these flags (trainable
     * variables first, then the others), or NULL past the last. */
    const char *(*weight_name)(const struct nn_weight_flags *f, size_t index);
    int weights_optional; /* some configs have none (Normalization with mean and variance,
                             Attention with score_mode dot) */
    /* It maps the last axis alone, so TimeDistributed(it) is it (Dense,
     * Dropout, activations): the wrapper adds it as it is. */
    int per_step;
    /* .keras files: the sub-groups holding its variables (MultiHeadAttention's
     * query_dense, ...) in Keras' weight order, NULL-terminated; NULL: by name. */
    const char *const *sub_groups;
    /* The engine's hooks; NULL parse: a class ddts knows by name only. */
    enum ddts_status (*parse)(struct nn_parse *p, struct nn_node *nd);
    enum ddts_status (*infer_shape)(struct ddts_model *m, struct nn_node *nd,
                                    struct ddts_error *err);
    enum ddts_status (*add_weights)(struct nn_parse *p, struct nn_node *nd);
    void (*plan)(struct ddts_model *m, size_t i, size_t cap, struct nn_plan_need *need);
    /* A second planning pass over all nodes, after every node's own plan
     * (fusions across nodes: max pooling with the convolution before it). */
    void (*plan_link)(struct ddts_model *m, size_t i, struct nn_plan_need *need);
    void (*forward)(struct ddts_model *m, struct nn_node *nd, size_t b);
    void (*backward)(struct ddts_model *m, struct nn_node *nd, size_t b);
    /* Multiply-adds per sample of the forward matrix product, for layers
     * that are one GEMM (Dense, Conv2D): the weight gradient and the input
     * gradient are each a product of the same size (ddts__nn_flops). */
    double (*macs)(const struct ddts_model *m, const struct nn_node *nd);
    /* Output buffers: 0 its own, NN_OUT_VIEW its input's y (Flatten),
     * NN_OUT_ACT z is its input's y and y its own (Activation). */
    int out;
    /* Its forward and backward passes treat each sample alone and touch
     * only the node's buffers (y, z, dy, dz, aux: (batch, size) each),
     * m->params, its weight gradients (written over the batch, never added
     * to) and m->ones: no model-wide scratch (m->col, m->tmp, m->gshare),
     * no per-thread scratch. A model made of such layers takes the batch
     * split (train.c): each thread runs the hooks over a block of the
     * batch in its own view of the model (ddts__nn_split_view). */
    int rows;
    /* The batch's random draws (a dropout mask) into the node's buffers,
     * from m->drop_rng, in training. Its forward makes them itself unless
     * m->drawn: the batch split draws every node's for the whole batch, in
     * node order, before the threads start (the same draws as one thread). */
    void (*draw)(struct ddts_model *m, struct nn_node *nd, size_t b);
    /* `ddts model new --layers` word and its hook, or NULL. */
    const char *spec_word;
    const char *spec_usage; /* "dense:UNITS[:ACTIVATION]" */
    enum ddts_status (*spec)(struct nn_spec *s);
};
enum { NN_OUT_OWN = 0, NN_OUT_VIEW = 1, NN_OUT_ACT = 2 };

/* The registry (layer.c): the families' descriptor lists, each NULL-terminated;
 * a new family is one file and one line in layer.c's list. */
extern const struct nn_layer_ops *const *const ddts__nn_families[];
/* The descriptor that accepts Keras class `cls` (aliases included), or NULL. */
const struct nn_layer_ops *ddts__nn_layer_find(const char *cls);
/* The descriptor whose spec word is `word`, or NULL. */
const struct nn_layer_ops *ddts__nn_layer_find_spec(const char *word);
/* The spec words, comma-separated, into buf (usage messages). */
void ddts__nn_layer_spec_words(char *buf, size_t cap);
/* Keras weight name `index` of class `cls` with flags `f`, or NULL (unknown
 * class or past its last weight). */
const char *ddts__nn_layer_weight_name(const char *cls, const struct nn_weight_flags *f,
                                       size_t index);
/* Position of sub-group `sub` in the sub_groups of class `cls`, or a number
 * past them all (unknown class, no list, not listed). */
size_t ddts__nn_layer_sub_rank(const char *cls, const char *sub);
/* 1 when every layer of class `cls` has weights in a file (Dense, Conv2D...). */
int ddts__nn_layer_always_weighted(const char *cls);

/* The input node's descriptor (InputLayer is handled by the config reader). */
extern const struct nn_layer_ops ddts__nn_input_ops;
/* layer_recurrent.c: return_state's outputs (added by the config reader, not a Keras class) */
extern const struct nn_layer_ops ddts__nn_rnn_state_ops;
/* One list per family file. */
extern const struct nn_layer_ops *const ddts__nn_family_dense[];
extern const struct nn_layer_ops *const ddts__nn_family_conv[];
extern const struct nn_layer_ops *const ddts__nn_family_pool[];
extern const struct nn_layer_ops *const ddts__nn_family_norm[];
extern const struct nn_layer_ops *const ddts__nn_family_reshape[];
extern const struct nn_layer_ops *const ddts__nn_family_merge[];
extern const struct nn_layer_ops *const ddts__nn_family_activation[];
extern const struct nn_layer_ops *const ddts__nn_family_dropout[];
extern const struct nn_layer_ops *const ddts__nn_family_embedding[];
extern const struct nn_layer_ops *const ddts__nn_family_recurrent[];
extern const struct nn_layer_ops *const ddts__nn_family_depthwise[];
extern const struct nn_layer_ops *const ddts__nn_family_attention[];
extern const struct nn_layer_ops *const ddts__nn_family_conv3d[];

/* ---- config accessors for parse hooks (config.c) ---- */

/* DDTS_EFORMAT "layer 'name' (Class): what" / DDTS_EUNSUPPORTED "... what is not supported". */
enum ddts_status ddts__nn_bad(struct nn_parse *p, const char *what);
enum ddts_status ddts__nn_unsup(struct nn_parse *p, const char *what);
/* 1 when `key` is present and not null. */
int ddts__nn_cfg_has(const struct nn_parse *p, const char *key);
/* 1 when `key` is a number (int or real). */
int ddts__nn_cfg_is_number(const struct nn_parse *p, const char *key);
/* The string at `key`, or NULL. */
const char *ddts__nn_cfg_str(const struct nn_parse *p, const char *key);
/* A boolean, `def` when absent or not a boolean. */
int ddts__nn_cfg_bool(const struct nn_parse *p, const char *key, int def);
/* An integral number in [lo, hi] (`def` when absent or null): 0, else -1
 * (not a number, not integral, or out of range) and *out untouched. */
int ddts__nn_cfg_int(const struct nn_parse *p, const char *key, long lo, long hi, long def,
                     int *out);
/* A number in [lo, hi] (`def` when absent or null) as a float: 0, else -1. */
int ddts__nn_cfg_float(const struct nn_parse *p, const char *key, double lo, double hi, double def,
                       float *out);
/* An int or a list of n ints, each in [1, 2^24) (`def` for all when absent): 0, else -1. */
int ddts__nn_cfg_ints(const struct nn_parse *p, const char *key, int n, int def, int *out);
/* The integer list `key` (at most max entries, each |v| < 2^31): its length, or -1. */
int ddts__nn_cfg_int_list(const struct nn_parse *p, const char *key, int max, int64_t *out);
/* ZeroPadding2D's padding: an int, a pair, or a pair of pairs, each in [0, 2^20]. */
int ddts__nn_cfg_pad4(const struct nn_parse *p, const char *key, int out[4]);
/* The activation at `key` (a name, or Keras 3's {"class_name": "function", "config": name}). */
enum ddts_status ddts__nn_cfg_act(struct nn_parse *p, const char *key, struct nn_act *out);
/* DDTS_EUNSUPPORTED unless `key` is absent or null. */
enum ddts_status ddts__nn_cfg_null(struct nn_parse *p, const char *key);
/* data_format channels_last (or absent); padding valid/same. */
enum ddts_status ddts__nn_cfg_channels_last(struct nn_parse *p);
enum ddts_status ddts__nn_cfg_padding(struct nn_parse *p, int *same);
/* `axis` (an int or a one-element list) is the last axis of an input of
 * rank `rank` (-1 or rank); an absent axis counts as the last unless
 * `required`. DDTS_EUNSUPPORTED naming it otherwise. */
enum ddts_status ddts__nn_cfg_axis_last(struct nn_parse *p, int rank, int required);
/* Adds weight `wname` of node p->idx with its initializer cfg[init_key]
 * (default `def`) and regularizer cfg[reg_key] (either key may be NULL). */
enum ddts_status ddts__nn_cfg_weight(struct nn_parse *p, const char *wname, int rank,
                                     const int64_t *shape, int trainable, const char *init_key,
                                     struct nn_init def, const char *reg_key);

/* Default initializers: glorot_uniform, zeros, ones. */
extern const struct nn_init ddts__nn_init_glorot, ddts__nn_init_zeros, ddts__nn_init_ones;

/* ---- helpers for spec hooks (layer.c) ---- */

/* A decimal integer in [lo, hi]: 0, else -1. */
int ddts__nn_spec_int(const char *s, long lo, long hi, long *out);
/* Keras names (activations): letters, digits, '_', '.', '>', at most 64. */
int ddts__nn_spec_word_ok(const char *s);
/* The initializer, regularizer and constraint keys of a new Dense/Conv2D config. */
extern const char ddts__nn_spec_initializers[];

/* ---- helpers for passes (layer.c) ---- */

static inline const float *ddts__nn_wdata(const struct ddts_model *m, int slot)
{
    return m->params + m->w[slot].off;
}

static inline float *ddts__nn_gdata(const struct ddts_model *m, int slot)
{
    return m->grads + m->w[slot].off;
}

/* Gradient destination of input t of node nd, or NULL when not needed; *acc
 * tells whether to add (the input has several consumers) or overwrite. */
static inline float *ddts__nn_dx(const struct ddts_model *m, const struct nn_node *nd, int t,
                                 int *acc)
{
    const struct nn_node *a = &m->nodes[nd->in[t]];
    *acc = 0;
    if (!a->needs_grad)
        return NULL;
    *acc = a->n_consumers > 1;
    return a->dy;
}

/* dst = src or dst += src (acc), n floats. */
void ddts__nn_put(float *dst, const float *src, size_t n, int acc);
/* z (rows, k) += bias (k). */
void ddts__nn_add_bias(size_t rows, size_t k, const float *bias, float *z, int nt);
/* Conv2D (layer_conv.c): compute and store only the leading rows x cols of
 * node conv's output, the cells its max pooling reads; returns whether. */
int ddts__nn_conv_crop(struct ddts_model *m, size_t conv, int rows, int cols);
/* A Conv2D's (or Conv2DTranspose's) whole geometry, a its input. */
struct ddts__conv_geom;
void ddts__nn_conv_geom_full(const struct nn_node *nd, const struct nn_node *a,
                             struct ddts__conv_geom *g);
/* Whether the node's activation is a plain relu applied in place (z == y). */
int ddts__nn_plain_relu_in_place(const struct nn_node *nd);
/* z += bias, then y = act(z) for a plain relu in place, fused in one pass.
 * Returns 1 when the activation was applied. */
int ddts__nn_bias_act(struct nn_node *nd, size_t rows, size_t k, const float *bias, int nt);
/* db (k) = sum over rows of dz (rows, k), as one GEMM with the ones vector. */
void ddts__nn_bias_grad(const struct ddts_model *m, size_t rows, size_t k, const float *dz,
                        float *db);
/* Backward of a layer whose output is its input (Flatten, Reshape, Activation). */
void ddts__nn_identity_backward(struct ddts_model *m, struct nn_node *nd, size_t b);
/* Output shape = the first input's shape (element-wise layers). */
enum ddts_status ddts__nn_shape_same(struct ddts_model *m, struct nn_node *nd,
                                     struct ddts_error *err);
/* A convolution's kernel_size, strides and dilation_rate (1, 2 or 3 numbers:
 * nd->dim1 from the class name's "1D", three for "3D"), into nd->kd/kh/kw,
 * sd/sh/sw, dd/dh/dw (1 where the layer has no such axis); a 1-D layer is a
 * (1, T) image (layer_conv.c). */
enum ddts_status ddts__nn_cfg_conv_window(struct nn_parse *p, struct nn_node *nd);
/* The rest of a Conv1D/2D/3D(Transpose) config after its window: no dilation
 * with strides, groups 1, channels_last, padding, use_bias, activation, and
 * the keys that must be null (layer_conv.c). */
enum ddts_status ddts__nn_cfg_conv_rest(struct nn_parse *p, struct nn_node *nd);
/* The bias weight (nd->units, zeros by default) when nd->use_bias
 * (layer_conv.c). */
enum ddts_status ddts__nn_cfg_bias(struct nn_parse *p, const struct nn_node *nd);
/* Keras 3 variable names of a kernel-and-bias layer: kernel, then bias when
 * use_bias (layer_dense.c). */
const char *ddts__nn_kernel_bias(const struct nn_weight_flags *f, size_t index);
/* Output (H', W', channels) of a window (convolution, pooling) over the
 * input image, TF's valid/same rules; sets nd->pt/pl/pb/pr (layer_conv.c). */
enum ddts_status ddts__nn_window_shape(struct ddts_model *m, struct nn_node *nd, int64_t channels,
                                       struct ddts_error *err);
/* TF's output length of a window (kernel k, stride s, dilation d) over `in`
 * cells, valid (same 0) or same (1), with the padding before and in all
 * (layer_conv.c); 0 when the window does not fit. */
long long ddts__nn_window_len(long long in, long long k, long long s, long long d, int same,
                              int *pad_lead, int *pad_total);
/* Zeroed (a, b) floats, aligned; sets *fail on overflow or out of memory. */
float *ddts__nn_plan_buf(size_t a, size_t b, int *fail);

#endif
