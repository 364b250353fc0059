/*
 * The activation family: Activation (any activation ddts knows), ReLU
 * (max_value, negative_slope, threshold), LeakyReLU, ELU and Softmax over the
 * last axis, as layers. Their z is their input's y (no copy); the engine
 * applies nd->act (src/nn/activations.c). PReLU is known by name only.
 */
#include <string.h>

#include "nn/layer.h"

static enum ddts_status activation_parse(struct nn_parse *p, struct nn_node *nd)
{
    const char *cls = nd->class_name;
    if (strcmp(cls, "Activation") == 0)
        return ddts__nn_cfg_act(p, "activation", &nd->act);
    if (strcmp(cls, "ReLU") == 0) {
        nd->act.kind = ACT_RELU;
        if (ddts__nn_cfg_float(p, "negative_slope", -3e38, 3e38, 0, &nd->act.alpha) != 0 ||
            ddts__nn_cfg_float(p, "max_value", -3e38, 3e38, 0, &nd->act.max_value) != 0 ||
            ddts__nn_cfg_float(p, "threshold", -3e38, 3e38, 0, &nd->act.threshold) != 0)
            return ddts__nn_bad(p, "negative_slope, max_value and threshold must be numbers");
        return DDTS_OK;
    }
    if (strcmp(cls, "LeakyReLU") == 0) {
        float ns = 0.3f;
        nd->act.kind = ACT_RELU;
        if (ddts__nn_cfg_float(p, "negative_slope", -3e38, 3e38, 0.3, &ns) != 0 ||
            ddts__nn_cfg_float(p, "alpha", -3e38, 3e38, ns, &nd->act.alpha) != 0)
            return ddts__nn_bad(p, "alpha must be a number");
        return DDTS_OK;
    }
    if (strcmp(cls, "ELU") == 0) {
        nd->act.kind = ACT_ELU;
        if (ddts__nn_cfg_float(p, "alpha", -3e38, 3e38, 1.0, &nd->act.alpha) != 0)
            return ddts__nn_bad(p, "alpha must be a number");
        return DDTS_OK;
    }
    /* Softmax */
    int ax;
    if (ddts__nn_cfg_int(p, "axis", -1, -1, -1, &ax) != 0)
        return ddts__nn_unsup(p, "softmax over an axis other than -1");
    nd->act.kind = ACT_SOFTMAX;
    return DDTS_OK;
}

/* "activation:NAME". */
static enum ddts_status activation_spec(struct nn_spec *s)
{
    if (s->n_arg != 2 || !ddts__nn_spec_word_ok(s->arg[1]))
        return s->fail(s, DDTS_EINVAL, "expected activation:NAME");
    enum ddts_status st = s->open(s, "Activation", "activation");
    if (st == DDTS_OK)
        s->json(s, ", \"activation\": \"%s\"", s->arg[1]);
    return st;
}

static const char *prelu_names(const struct nn_weight_flags *f, size_t index)
{
    (void)f;
    return index == 0 ? "alpha" : NULL;
}

static const struct nn_layer_ops activation_ops = {
    .class_names = (const char *const[]){"Activation", "ReLU", "LeakyReLU", "Softmax", "ELU", NULL},
    .kind = NN_ACTIVATION,
    .per_step = 1,
    .doc = "an activation function as a layer",
    .min_in = 1,
    .max_in = 1,
    .parse = activation_parse,
    .infer_shape = ddts__nn_shape_same,
    .backward = ddts__nn_identity_backward,
    .out = NN_OUT_ACT,
    .spec_word = "activation",
    .spec_usage = "activation:NAME",
    .spec = activation_spec,
};

static const struct nn_layer_ops prelu_ops = {
    .class_names = (const char *const[]){"PReLU", NULL},
    .kind = NN_NAMED,
    .doc = "not supported by the engine; weight alpha",
    .weight_name = prelu_names,
};

const struct nn_layer_ops *const ddts__nn_family_activation[] = {&activation_ops, &prelu_ops, NULL};
