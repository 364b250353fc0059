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

Written from the Keras layer definitions, independently of ddts' C code."""
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..', '..', '..', 'shared', 'keras-fixtures-2', 'tools'))
import npref  # noqa: E402

_base = npref.layer_call


def additive_scores(q, k, w=1.0, a=1.0, c=1.0):
    """(B, T, D), (B, S, D) -> (B, T, S): c * sum_d w_d tanh(a (q + k))"""
    return c * (w * np.tanh(a * (q[:, :, None, :] + k[:, None, :, :]))).sum(-1)


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


npref.layer_call = layer_call

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
