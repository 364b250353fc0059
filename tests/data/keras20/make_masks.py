#!/usr/bin/env python3
"""make_masks.py: writes the masked-attention fixtures of this folder (run it here with Debian's
python3-h5py/numpy), reusing make_fixtures.py's writers (imported).

TF.js has no attention layer, so each reference is npref20.py's float64 numpy pass (its mask
rules are written from the Keras layer definitions; see its docstring).

  tfk2_attention_masks_causal   two inputs, x (6, 4) and an attention mask (6, 6) of 0/1
      (ones on the diagonal, so no query row is fully masked): Dense q (8, tanh) ->
      MultiHeadAttention(2 heads, key_dim 3, value_dim 2, output_shape 5, dropout 0.2) called
      as mha(q, q, attention_mask=mask, use_causal_mask=True) -> Attention()([m, m],
      use_causal_mask=True); AdditiveAttention(use_scale, causal=True in its config, the
      tf.keras <= 2.9 form)([q, q]) -> Concatenate -> Flatten -> Dense(3, softmax)
  tfk2_mha_mask_zero            ids (8,) with trailing zero padding -> Embedding(6, 8,
      mask_zero) -> MultiHeadAttention(2 heads, key_dim 4, dropout 0.1)(e, e) ->
      MultiHeadAttention(2 heads, key_dim 4)(m, m, use_causal_mask=True) -> Attention(use_scale)
      ([m2, e]); AdditiveAttention()([e, m2], use_causal_mask=True) -> Concatenate ->
      GlobalAveragePooling1D (masked) -> Dense(3, softmax): the implicit query/value masks
      and the query mask passed through every attention to the pooling

Each is written as tf.keras 2.15 writes a legacy .h5 (every call argument but the first in the
first inbound reference's kwargs), and the first also as Keras 3.13 writes a .keras (args
[q, v], kwargs {"attention_mask": <__keras_tensor__>, "use_causal_mask": true}; Attention's
inputs as one list argument and use_causal_mask in kwargs; MultiHeadAttention's weights in
query_dense/key_dense/value_dense/output_dense sub-groups). The second has no .keras twin:
Keras 3 passes the masks it derives as query_mask/value_mask tensors in the call's kwargs,
a form not verified here (ddts refuses such tensors by name)."""
import copy
import io
import json
import os
import sys
import zipfile

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_fixtures as mf  # noqa: E402
import npref20  # noqa: E402

npref = npref20.npref


def node(*refs, **kw):
    """tf.keras 2.x inbound node: refs with the call's other arguments in each one's kwargs"""
    return [[[r, 0, 0, dict(kw)] for r in refs]]


def lay(cls, name, inbound, **cfg):
    c = {'name': name, 'trainable': True, 'dtype': 'float32'}
    c.update(cfg)
    return {'class_name': cls, 'config': c, 'name': name, 'inbound_nodes': inbound}


def mha(name, inbound, heads, key_dim, value_dim=None, dropout=0.0, output_shape=None,
        shape=None):
    return lay('MultiHeadAttention', name, inbound, num_heads=heads, key_dim=key_dim,
               value_dim=value_dim or key_dim, dropout=dropout, use_bias=True,
               output_shape=output_shape, attention_axes=[1],
               kernel_initializer=mf.init('GlorotUniform'), bias_initializer=mf.init('Zeros'),
               kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
               kernel_constraint=None, bias_constraint=None, query_shape=shape,
               key_shape=shape, value_shape=shape)


def mha_w(d, heads, key_dim, value_dim, out):
    return [('query/kernel', (d, heads, key_dim)), ('query/bias', (heads, key_dim)),
            ('key/kernel', (d, heads, key_dim)), ('key/bias', (heads, key_dim)),
            ('value/kernel', (d, heads, value_dim)), ('value/bias', (heads, value_dim)),
            ('attention_output/kernel', (heads, value_dim, out)),
            ('attention_output/bias', (out,))]


def inp(name, shape, dtype='float32'):
    return {'class_name': 'InputLayer', 'config': {'batch_input_shape': [None] + shape,
                                                   'dtype': dtype, 'sparse': False,
                                                   'ragged': False, 'name': name},
            'name': name, 'inbound_nodes': []}


def functional(name, inputs, layers, out):
    return {'class_name': 'Functional',
            'config': {'name': name, 'trainable': True,
                       'layers': [inp(n, s) for n, s in inputs] + layers,
                       'input_layers': [[n, 0, 0] for n, _ in inputs],
                       'output_layers': [[out, 0, 0]]},
            'keras_version': mf.KV, 'backend': 'tensorflow'}


def model_causal():
    L = [mf.dense('dense', 'input_1', 8, 'tanh'),
         mha('multi_head_attention',
             node('dense', value=['dense', 0, 0], attention_mask=['input_2', 0, 0],
                  use_causal_mask=True), 2, 3, 2, 0.2, 5, [None, 6, 8]),
         lay('Attention', 'attention',
             node('multi_head_attention', 'multi_head_attention', use_causal_mask=True),
             use_scale=False, score_mode='dot', dropout=0.0),
         lay('AdditiveAttention', 'additive_attention', node('dense', 'dense'), use_scale=True,
             causal=True, dropout=0.0),
         lay('Concatenate', 'concatenate', node('attention', 'additive_attention'), axis=-1),
         lay('Flatten', 'flatten', node('concatenate'), data_format='channels_last'),
         mf.dense('dense_1', 'flatten', 3, 'softmax')]
    W = {'dense': [('kernel', (4, 8)), ('bias', (8,))],
         'multi_head_attention': mha_w(8, 2, 3, 2, 5),
         'additive_attention': [('scale', (8,))],
         'dense_1': [('kernel', (78, 3)), ('bias', (3,))]}
    return functional('model_2', [('input_1', [6, 4]), ('input_2', [6, 6])], L, 'dense_1'), W


def model_mask_zero():
    L = [lay('Embedding', 'embedding', node('input_1'), input_dim=6, output_dim=8,
             embeddings_initializer=mf.init('RandomUniform', {'minval': -0.05, 'maxval': 0.05,
                                                              'seed': None}),
             embeddings_regularizer=None, activity_regularizer=None,
             embeddings_constraint=None, mask_zero=True, input_length=8),
         mha('multi_head_attention', node('embedding', value=['embedding', 0, 0]), 2, 4,
             dropout=0.1, shape=[None, 8, 8]),
         mha('multi_head_attention_1',
             node('multi_head_attention', value=['multi_head_attention', 0, 0],
                  use_causal_mask=True), 2, 4, shape=[None, 8, 8]),
         lay('Attention', 'attention', node('multi_head_attention_1', 'embedding'),
             use_scale=True, score_mode='dot', dropout=0.0),
         lay('AdditiveAttention', 'additive_attention',
             node('embedding', 'multi_head_attention_1', use_causal_mask=True),
             use_scale=False, dropout=0.0),
         lay('Concatenate', 'concatenate', node('attention', 'additive_attention'), axis=-1),
         lay('GlobalAveragePooling1D', 'global_average_pooling1d', node('concatenate'),
             data_format='channels_last', keepdims=False),
         mf.dense('dense', 'global_average_pooling1d', 3, 'softmax')]
    W = {'embedding': [('embeddings', (6, 8))],
         'multi_head_attention': mha_w(8, 2, 4, 4, 8),
         'multi_head_attention_1': mha_w(8, 2, 4, 4, 8),
         'attention': [('scale', ())],
         'dense': [('kernel', (16, 3)), ('bias', (3,))]}
    return functional('model_3', [('input_1', [8])], L, 'dense'), W


def shapes_of(path, xs):
    """Each layer's output shape (batch excluded), from a numpy pass."""
    shapes = {}
    base = npref.layer_call

    def rec(cls, c, W, x, kmajor, kwargs):
        y = base(cls, c, W, x, kmajor, kwargs)
        shapes[c['name']] = y.shape[1:]
        return y
    npref.layer_call = rec
    try:
        npref.forward(path, [x.astype(np.float64) for x in xs])
    finally:
        npref.layer_call = base
    return shapes


def keras3(cfg, shapes, xs):
    """make_fixtures.keras3 plus the call arguments: MultiHeadAttention's args [q, v] and
    kwargs (attention_mask as a __keras_tensor__, use_causal_mask), the others' kwargs."""
    for (n, _, _), x in zip(cfg['config']['input_layers'], xs):
        shapes[n] = x.shape[1:]
    flat = copy.deepcopy(cfg)
    kws = {}
    for l in flat['config']['layers']:  # keyword tensors out, for make_fixtures.keras3
        if l['inbound_nodes']:
            kw = l['inbound_nodes'][0][0][3]
            kws[l['name']] = dict(kw)
            for r in l['inbound_nodes'][0]:
                r[3] = {}
            if l['class_name'] == 'MultiHeadAttention':
                l['inbound_nodes'][0].append([kw['value'][0], 0, 0, {}])
    c3 = mf.keras3(flat, shapes)
    c3['config']['input_layers'] = cfg['config']['input_layers']

    def tensor(name):
        return {'class_name': '__keras_tensor__',
                'config': {'shape': [None] + list(shapes[name]), 'dtype': 'float32',
                           'keras_history': [name, 0, 0]}}
    for l in c3['config']['layers']:
        kw = kws.get(l['name'], {})
        l['config'].pop('query_shape', None), l['config'].pop('key_shape', None)
        l['config'].pop('value_shape', None)
        if l['class_name'] == 'MultiHeadAttention':
            l['config']['seed'] = None
            l['inbound_nodes'][0]['args'] = l['inbound_nodes'][0]['args'][0]
            l['build_config'] = {'shapes_dict': {'query_shape': [None] + list(shapes['dense']),
                                                 'value_shape': [None] + list(shapes['dense'])}}
        node3 = l['inbound_nodes'][0] if l['inbound_nodes'] else {}
        causal = [c for c in cfg['config']['layers'] if c['name'] == l['name']]
        if causal and causal[0]['config'].get('causal'):  # a call argument in Keras 3
            node3['kwargs']['use_causal_mask'] = True
        for k, v in kw.items():
            if k == 'value':
                continue
            node3['kwargs'][k] = tensor(v[0]) if isinstance(v, list) else v
    return c3


def write_keras(path, cfg3, h5path):
    """make_fixtures.write_keras, with MultiHeadAttention's weights in its sub-groups."""
    mf.write_keras(path, cfg3, h5path)
    with zipfile.ZipFile(path) as z:
        parts = {n: z.read(n) for n in z.namelist()}
    buf = io.BytesIO(parts['model.weights.h5'])
    with h5py.File(buf, 'r+') as f:
        g = f['layers']['multi_head_attention']
        old = [np.asarray(g['vars'][str(i)]) for i in range(len(g['vars']))]
        del g['vars']
        g.create_group('vars')
        for k, sub in enumerate(('query_dense', 'key_dense', 'value_dense', 'output_dense')):
            v = g.create_group(sub).create_group('vars')
            v.create_dataset('0', data=old[2 * k])
            v.create_dataset('1', data=old[2 * k + 1])
        for empty in ('_softmax', '_dropout_layer'):
            g.create_group(empty).create_group('vars')
    parts['model.weights.h5'] = buf.getvalue()
    with zipfile.ZipFile(path, 'w') as z:
        for n in ('metadata.json', 'config.json', 'model.weights.h5'):
            z.writestr(zipfile.ZipInfo(n, date_time=(2026, 12, 3, 12, 0, 0)), parts[n])


def main():
    os.chdir(HERE)
    r = np.random.default_rng(1234)
    x1 = r.random((8, 6, 4), dtype=np.float32)
    mask = (r.random((8, 6, 6)) < 0.7).astype(np.float32)
    mask[:, np.arange(6), np.arange(6)] = 1.0
    ids = np.zeros((8, 8), dtype=np.float32)
    for n, length in enumerate(r.integers(3, 9, 8)):
        ids[n, :length] = r.integers(1, 6, length)
    for name, make, xs in (('tfk2_attention_masks_causal', model_causal, [x1, mask]),
                           ('tfk2_mha_mask_zero', model_mask_zero, [ids])):
        cfg, W = make()
        mf.write_h5(name + '.h5', cfg, W)
        files = [name + '.x.npy'] if len(xs) == 1 else ['%s.x%d.npy' % (name, i)
                                                         for i in range(len(xs))]
        for f, x in zip(files, xs):
            np.save(f, x)
        y = npref.forward(name + '.h5', [x.astype(np.float64) for x in xs]).astype(np.float32)
        np.save(name + '.numpy.npy', y)
        print(name, y.shape, 'outputs', np.round(y, 3).tolist()[:2])
        if make is not model_causal:
            continue
        k3 = 'k3' + name[4:]
        c3 = keras3(cfg, shapes_of(name + '.h5', xs), xs)
        write_keras(k3 + '.keras', c3, name + '.h5')
        for i, x in enumerate(xs):
            np.save('%s.x%d.npy' % (k3, i), x)
        y3 = npref.forward(k3 + '.keras', [x.astype(np.float64) for x in xs]).astype(np.float32)
        np.save(k3 + '.numpy.npy', y3)
        print('%s: the .keras file (Keras 3 softmax: probabilities times the mask) vs the .h5: '
              'max |diff| %.3g' % (k3, float(np.abs(y3 - y).max())))


if __name__ == '__main__':
    main()
