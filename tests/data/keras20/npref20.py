#!/usr/bin/env python3
"""npref20.py MODEL X [OUT.npy]: float64 numpy forward pass of a Keras file, as
../shared/keras-fixtures-2/tools/npref.py (imported: its graph walk, weight reading by
name and layer maths), plus the layer forms of issue 20 that it refuses:

  LayerNormalization over a list of axes   mean and biased variance over those axes;
                                           gamma/beta have the axes' shape
  AdditiveAttention                        scores[t, s] = sum_d scale_d tanh(q[t, d] + k[s, d])
                                           (scale = 1 with use_scale false)
  Attention(score_mode="concat")           scores[t, s] = concat_score_weight
                                                          * sum_d tanh(scale (q[t, d] + k[s, d]))
  then softmax over s and the product with value (keras/src/layers/attention/*.py);
  in .keras files AdditiveAttention's variable 0 is its scale.

Masks (make_masks.py's models), from keras/src/layers/attention/*.py and the Softmax layer:

  Keras masks flow with the tensors: Embedding(mask_zero) starts one (ids != 0); Dense,
  Dropout, Activation, LayerNormalization and the attention layers (their query's mask) pass
  it on; Concatenate ANDs its inputs' masks; GlobalAveragePooling1D averages over the kept
  steps and ends it.
  MultiHeadAttention: kept (t, s) = query_mask[t] & value_mask[s] & key_mask[s] (the inputs'
                      masks) & (s <= t with use_causal_mask) & attention_mask[t, s] != 0;
                      masked scores get (1 - mask) * -1e9 added (in float32, as TensorFlow
                      does: a row with every score masked comes out uniform), then the softmax;
                      Keras 3's Softmax also multiplies the result by the mask.
  Attention, AdditiveAttention: kept (t, s) = value_mask[s] & (s <= t with use_causal_mask
                      or the config's causal); scores -= 1e9 * (1 - kept); the output row t
                      times query_mask[t].
  Call arguments: tf.keras 2.x keeps every argument but the first in the first inbound
  reference's kwargs ({"value": [...], "attention_mask": [...], "use_causal_mask": true}),
  Keras 3 in the node's "kwargs"; tensors among them follow the positional inputs.

Written from the Keras layer definitions, independently of ddts' C code."""
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..', '..', '..', 'shared', 'keras-fixtures-2', 'tools'))
import npref  # noqa: E402

_base = npref.layer_call
_base_node_inputs = npref.node_inputs
TENSOR_KW = ('value', 'key', 'attention_mask')


def is_ref(v):
    return (isinstance(v, dict) and v.get('class_name') == '__keras_tensor__') or (
        isinstance(v, list) and len(v) >= 3 and isinstance(v[0], str) and isinstance(v[1], int))


def ref_of(v):
    h = v['config']['keras_history'] if isinstance(v, dict) else v
    return (h[0], h[1], h[2])


def node_inputs(node):
    """npref's, plus the tensors passed by keyword (both forms), named in kw['__kw__']"""
    if isinstance(node, dict):
        refs, kw = [], dict(node.get('kwargs', {}))

        def walk(a):
            if is_ref(a) and isinstance(a, dict):
                refs.append(ref_of(a))
            elif isinstance(a, (list, tuple)):
                for v in a:
                    walk(v)
        walk(node.get('args', []))
    else:
        refs = [(r[0], r[1], r[2]) for r in node]
        kw = dict(node[0][3]) if node and len(node[0]) > 3 and isinstance(node[0][3], dict) else {}
    names = [k for k in TENSOR_KW if is_ref(kw.get(k))]
    refs += [ref_of(kw.pop(k)) for k in names]
    kw['__kw__'] = names
    return refs, kw


npref.node_inputs = node_inputs

# masks ride along with the arrays (every array stays alive in the graph walk's dict)
MASKS = {}


def mask_of(x):
    return MASKS.get(id(x))


def f32_masked(sc, keep):
    """sc + (1 - keep) * -1e9, the masked entries summed in float32 as TensorFlow does"""
    return np.where(keep, sc, (sc.astype(np.float32) + np.float32(-1e9)).astype(np.float64))


def split_inputs(xs, kwargs):
    names = kwargs.get('__kw__', [])
    npos = len(xs) - len(names)
    pos, byname = list(xs[:npos]), dict(zip(names, xs[npos:]))
    return pos, byname


def causal(T, S):
    return np.tril(np.ones((T, S), dtype=bool))


def mha_masked(c, W, xs, kwargs, kmajor):
    pos, kw = split_inputs(xs, kwargs)
    q_in = pos[0]
    v_in = kw.get('value', pos[1] if len(pos) > 1 else q_in)
    k_in = kw.get('key', pos[2] if len(pos) > 2 else None)
    ub = c.get('use_bias', True)

    def proj(x, nm):
        y = np.einsum('btd,dhk->bthk', x, npref.get(W, nm + '/kernel'))
        return y + npref.get(W, nm + '/bias') if ub else y
    q = proj(q_in, 'query') / np.sqrt(float(c['key_dim']))
    k = proj(v_in if k_in is None else k_in, 'key')
    v = proj(v_in, 'value')
    sc = np.einsum('bqhk,bshk->bhqs', q, k)
    B, _, T, S = sc.shape
    keep, any_mask = np.ones((B, T, S), dtype=bool), False
    for m, shape in ((mask_of(q_in), (B, T, 1)), (mask_of(v_in), (B, 1, S)),
                     (mask_of(k_in) if k_in is not None else None, (B, 1, S))):
        if m is not None:
            keep &= m.reshape(shape)
            any_mask = True
    if kwargs.get('use_causal_mask'):
        keep &= causal(T, S)[None]
        any_mask = True
    if 'attention_mask' in kw:
        keep &= kw['attention_mask'] != 0
        any_mask = True
    if any_mask:
        p = npref.softmax(f32_masked(sc, keep[:, None]), -1)
        if kmajor >= 3:
            p = p * keep[:, None]
    else:
        p = npref.softmax(sc, -1)
    o = np.einsum('bhqs,bshv->bqhv', p, v)
    y = np.einsum('bqhv,hvd->bqd', o, npref.get(W, 'attention_output/kernel'))
    return y + npref.get(W, 'attention_output/bias') if ub else y


def luong_masked(cls, c, W, xs, kwargs):
    q, v = xs[0], xs[1]
    k = xs[2] if len(xs) > 2 else v
    if cls == 'AdditiveAttention':
        w = npref.get(W, 'scale') if c.get('use_scale', True) else 1.0
        sc = additive_scores(q, k, w=w)
    elif c.get('score_mode') == 'concat':
        a = npref.get(W, 'scale') if c.get('use_scale') else 1.0
        sc = additive_scores(q, k, a=a, c=npref.get(W, 'concat_score_weight'))
    else:
        sc = q @ np.swapaxes(k, -1, -2)
        if c.get('use_scale'):
            sc = sc * npref.get(W, 'scale')
    B, T, S = sc.shape
    keep = np.ones((B, T, S), dtype=bool)
    if mask_of(v) is not None:
        keep &= mask_of(v)[:, None, :]
    if kwargs.get('use_causal_mask') or c.get('causal'):
        keep &= causal(T, S)[None]
    y = npref.softmax(f32_masked(sc, keep), -1) @ v
    if mask_of(q) is not None:
        y = y * mask_of(q)[:, :, None]
    return y


PASS_MASK = ('Dense', 'Dropout', 'Activation', 'LayerNormalization', 'MultiHeadAttention',
             'Attention', 'AdditiveAttention')


def out_mask(cls, c, xs):
    ms = [mask_of(x) for x in xs]
    if cls == 'Embedding':
        return xs[0] != 0 if c.get('mask_zero') else None
    if cls in PASS_MASK:
        return ms[0]
    if cls == 'Concatenate' and any(m is not None for m in ms):
        return np.logical_and.reduce([m if m is not None else np.ones(x.shape[:2], dtype=bool)
                                      for m, x in zip(ms, xs)])
    return None


def additive_scores(q, k, w=1.0, a=1.0, c=1.0):
    """(B, T, D), (B, S, D) -> (B, T, S): c * sum_d w_d tanh(a (q + k))"""
    return c * (w * np.tanh(a * (q[:, :, None, :] + k[:, None, :, :]))).sum(-1)


def masked_call(cls, c, W, xs, kmajor, kwargs):
    """the layer, with the Keras masks of its inputs; records its output's mask"""
    x = xs[0]
    if cls == 'MultiHeadAttention':
        y = mha_masked(c, W, xs, kwargs, kmajor)
    elif cls in ('Attention', 'AdditiveAttention'):
        y = luong_masked(cls, c, W, xs, kwargs)
    elif cls == 'GlobalAveragePooling1D' and mask_of(x) is not None:
        assert c.get('data_format', 'channels_last') == 'channels_last'
        m = mask_of(x)[:, :, None].astype(np.float64)
        y = (x * m).sum(1) / m.sum(1)
    else:
        kw = {k: v for k, v in kwargs.items() if k != '__kw__'}
        y = layer_call(cls, c, W, xs, kmajor, kw)
    m = out_mask(cls, c, xs)
    if m is not None:
        MASKS[id(y)] = m
    return y


def layer_call(cls, c, W, xs, kmajor, kwargs):
    x = xs[0]
    if cls == 'LayerNormalization' and isinstance(c.get('axis'), list) and len(c['axis']) > 1:
        assert not c.get('rms_scaling')
        ax = tuple(a % x.ndim for a in c['axis'])
        m = x.mean(ax, keepdims=True)
        v = ((x - m) ** 2).mean(ax, keepdims=True)
        y = (x - m) / np.sqrt(v + c.get('epsilon', 1e-3))
        shape = [x.shape[d] if d in ax else 1 for d in range(x.ndim)]
        if c.get('scale', True):
            y = y * npref.get(W, 'gamma').reshape(shape)
        if c.get('center', True):
            y = y + npref.get(W, 'beta').reshape(shape)
        return y
    if cls in ('AdditiveAttention', 'Attention') and (cls == 'AdditiveAttention' or
                                                       c.get('score_mode') == 'concat'):
        assert not c.get('causal') and not kwargs.get('use_causal_mask')
        q, v = xs[0], xs[1]
        k = xs[2] if len(xs) > 2 else v
        if cls == 'AdditiveAttention':
            w = npref.get(W, 'scale') if c.get('use_scale', True) else 1.0
            sc = additive_scores(q, k, w=w)
        else:
            a = npref.get(W, 'scale') if c.get('use_scale') else 1.0
            sc = additive_scores(q, k, a=a, c=npref.get(W, 'concat_score_weight'))
        return npref.softmax(sc, -1) @ v
    return _base(cls, c, W, xs, kmajor, kwargs)


npref.layer_call = masked_call
_forward = npref.forward


def forward(path, xs):
    MASKS.clear()
    return _forward(path, xs)


npref.forward = forward

_zip_layer = npref.ZipWeights.layer


def zip_layer(self, l, kmajor):
    """.keras weights: AdditiveAttention's one variable is its scale (D)."""
    if l['class_name'] == 'AdditiveAttention':
        g = self.g[self.key(l)]['vars']
        return {'scale': np.asarray(g['0'], dtype=np.float64)} if '0' in g else {}
    return _zip_layer(self, l, kmajor)


npref.ZipWeights.layer = zip_layer

if __name__ == '__main__':
    xs = [np.load(p).astype(np.float64) for p in sys.argv[2].split(',')]
    y = npref.forward(sys.argv[1], xs)
    if len(sys.argv) > 3:
        np.save(sys.argv[3], y.astype(np.float32))
    print(sys.argv[1], 'numpy', y.shape)
