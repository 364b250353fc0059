#!/usr/bin/env python3
"""make_fixtures.py: writes the issue-20 fixtures of this folder (run it here, with Debian's
python3-h5py/numpy and NODE_PATH pointing at an `npm install @tensorflow/tfjs@4.22.0`).

No real Keras file with these layer classes was found, so each model is written here the way
tf.keras 2.15 writes a legacy .h5 (model_config / training_config attributes, model_weights with
layer_names / weight_names, datasets <layer>/<layer>/<weight>:0), with weights drawn from
numpy.random.default_rng(20) and 8 inputs drawn from default_rng(1234) (uniform [0, 1)).

  NAME.h5          the model
  NAME.x.npy       the input (8 samples, float32)
  NAME.tfjs.npy    TensorFlow.js 4.22 predictions (CPU), where TF.js has every layer
  NAME.numpy.npy   npref20.py predictions (float64 numpy), where TF.js lacks a layer

The models (see the README for what each checks):
  tfk2_prelu_crop_permute_maxmin   PReLU, Cropping2D, Permute, Maximum, Minimum, SpatialDropout2D,
                                   GaussianNoise, GaussianDropout, LayerNormalization(axis=[2, 3])
  tfk2_additive_concat_attention   AdditiveAttention(use_scale), Attention(score_mode="concat",
                                   use_scale) on [q, v, k], Attention(use_scale) (dot) on [q, v],
                                   LayerNormalization(axis=[1, 2])
Each model is also written as a Keras 3.13 `.keras` zip (k3_* names: config.json in Keras 3's
form, layers with module / registered_name / build_config, DTypePolicy dtypes, inbound nodes as
args of __keras_tensor__ objects, merge and attention inputs as one list argument;
model.weights.h5 keyed layers/<snake_case(class)>[_n]/vars/<i>), with the same weights, input
and reference (checked: TF.js on the .keras file gives the same output, or npref20.py does).
TF.js has no SpatialDropout2D: its reference model has Dropout at that place (both are the
identity in inference, which is what the reference checks). TF.js has neither attention
layer: that model's reference is npref20.py's; for the first model npref20.py agrees with TF.js
(printed)."""
import copy
import io
import json
import os
import subprocess
import sys
import zipfile

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = os.path.join(HERE, '..', '..', '..', '..', 'shared', 'keras-fixtures-2', 'tools')
sys.path.insert(0, TOOLS)
sys.path.insert(0, HERE)
import h5_to_tfjs  # noqa: E402
import npref20  # noqa: E402

KV = '2.15.0'
rng = np.random.default_rng(20)


def init(cls, extra=None):
    d = {'class_name': cls, 'config': dict(extra or {})}
    if cls == 'GlorotUniform':
        d['config'].setdefault('seed', None)
    return d


def layer(cls, name, inbound, **cfg):
    c = {'name': name, 'trainable': True, 'dtype': 'float32'}
    c.update(cfg)
    return {'class_name': cls, 'config': c, 'name': name,
            'inbound_nodes': [[[i, 0, 0, {}] for i in inbound]] if inbound else []}


def conv(name, src, filters):
    return layer('Conv2D', name, [src], filters=filters, kernel_size=[3, 3], strides=[1, 1],
                 padding='same', data_format='channels_last', dilation_rate=[1, 1], groups=1,
                 activation='linear', use_bias=True, kernel_initializer=init('GlorotUniform'),
                 bias_initializer=init('Zeros'), kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, bias_constraint=None)


def dense(name, src, units, act):
    return layer('Dense', name, [src], units=units, activation=act, use_bias=True,
                 kernel_initializer=init('GlorotUniform'), bias_initializer=init('Zeros'),
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None)


def layernorm(name, src, axis):
    return layer('LayerNormalization', name, [src], axis=axis, epsilon=0.001, center=True,
                 scale=True, beta_initializer=init('Zeros'), gamma_initializer=init('Ones'),
                 beta_regularizer=None, gamma_regularizer=None, beta_constraint=None,
                 gamma_constraint=None)


def functional(name, shape, layers, out):
    inp = {'class_name': 'InputLayer', 'config': {'batch_input_shape': [None] + shape,
                                                  'dtype': 'float32', 'sparse': False,
                                                  'ragged': False, 'name': 'input_1'},
           'name': 'input_1', 'inbound_nodes': []}
    return {'class_name': 'Functional',
            'config': {'name': name, 'trainable': True, 'layers': [inp] + layers,
                       'input_layers': [['input_1', 0, 0]], 'output_layers': [[out, 0, 0]]},
            'keras_version': KV, 'backend': 'tensorflow'}


def model_a():
    L = [conv('conv2d', 'input_1', 4),
         layer('PReLU', 'p_re_lu', ['conv2d'], alpha_initializer=init('Zeros'),
               alpha_regularizer=None, alpha_constraint=None, shared_axes=[1, 2]),
         conv('conv2d_1', 'input_1', 4),
         layer('PReLU', 'p_re_lu_1', ['conv2d_1'], alpha_initializer=init('Zeros'),
               alpha_regularizer=None, alpha_constraint=None, shared_axes=None),
         layer('Maximum', 'maximum', ['p_re_lu', 'p_re_lu_1']),
         layer('Permute', 'permute', ['p_re_lu_1'], dims=[2, 1, 3]),
         layer('Minimum', 'minimum', ['maximum', 'permute']),
         layer('Cropping2D', 'cropping2d', ['minimum'], cropping=[[1, 0], [0, 2]],
               data_format='channels_last'),
         layer('SpatialDropout2D', 'spatial_dropout2d', ['cropping2d'], rate=0.3,
               noise_shape=None, seed=None),
         layer('GaussianNoise', 'gaussian_noise', ['spatial_dropout2d'], stddev=0.2, seed=None),
         layer('GaussianDropout', 'gaussian_dropout', ['gaussian_noise'], rate=0.2, seed=None),
         layernorm('layer_normalization', 'gaussian_dropout', [2, 3]),
         layer('Flatten', 'flatten', ['layer_normalization'], data_format='channels_last'),
         dense('dense', 'flatten', 3, 'softmax')]
    # (6, 6, 3) -> conv (6, 6, 4) -> crop (5, 4, 4); LayerNormalization over (4, 4)
    W = {'conv2d': [('kernel', (3, 3, 3, 4)), ('bias', (4,))],
         'p_re_lu': [('alpha', (1, 1, 4))],
         'conv2d_1': [('kernel', (3, 3, 3, 4)), ('bias', (4,))],
         'p_re_lu_1': [('alpha', (6, 6, 4))],
         'layer_normalization': [('gamma', (4, 4)), ('beta', (4, 4))],
         'dense': [('kernel', (80, 3)), ('bias', (3,))]}
    return functional('model', [6, 6, 3], L, 'dense'), W, [6, 6, 3]


def model_b():
    L = [dense('dense', 'input_1', 6, 'tanh'),
         dense('dense_1', 'input_1', 6, 'linear'),
         dense('dense_2', 'input_1', 6, 'tanh'),
         layer('AdditiveAttention', 'additive_attention', ['dense', 'dense_1'], use_scale=True,
               causal=False, dropout=0.0),
         layer('Attention', 'attention', ['dense', 'dense_1', 'dense_2'], use_scale=True,
               score_mode='concat', causal=False, dropout=0.0),
         layer('Attention', 'attention_1', ['dense', 'dense_1'], use_scale=True,
               score_mode='dot', causal=False, dropout=0.0),
         layer('Concatenate', 'concatenate', ['additive_attention', 'attention', 'attention_1'],
               axis=-1),
         layernorm('layer_normalization', 'concatenate', [1, 2]),
         layer('Flatten', 'flatten', ['layer_normalization'], data_format='channels_last'),
         dense('dense_3', 'flatten', 3, 'softmax')]
    W = {'dense': [('kernel', (4, 6)), ('bias', (6,))],
         'dense_1': [('kernel', (4, 6)), ('bias', (6,))],
         'dense_2': [('kernel', (4, 6)), ('bias', (6,))],
         'additive_attention': [('scale', (6,))],
         'attention': [('scale', ()), ('concat_score_weight', ())],
         'attention_1': [('scale', ())],
         'layer_normalization': [('gamma', (5, 18)), ('beta', (5, 18))],
         'dense_3': [('kernel', (90, 3)), ('bias', (3,))]}
    return functional('model_1', [5, 4], L, 'dense_3'), W, [5, 4]


TRAINING = {'loss': 'categorical_crossentropy', 'metrics': [[{'class_name': 'MeanMetricWrapper',
            'config': {'name': 'accuracy', 'dtype': 'float32', 'fn': 'categorical_accuracy'}}]],
            'weighted_metrics': None, 'loss_weights': None,
            'optimizer_config': {'class_name': 'Custom>Adam', 'config': {
                'name': 'Adam', 'weight_decay': None, 'clipnorm': None, 'global_clipnorm': None,
                'clipvalue': None, 'use_ema': False, 'ema_momentum': 0.99,
                'ema_overwrite_frequency': None, 'jit_compile': False,
                'is_legacy_optimizer': False, 'learning_rate': 0.01, 'beta_1': 0.9,
                'beta_2': 0.999, 'epsilon': 1e-07, 'amsgrad': False}}}


def value(name, shape):
    if name == 'gamma':
        return 1.0 + 0.3 * rng.standard_normal(shape)
    if name in ('beta', 'bias', 'alpha'):
        return 0.3 * rng.standard_normal(shape)
    if name == 'scale' and shape == ():
        return np.float64(0.7)
    if name == 'concat_score_weight':
        return np.float64(1.3)
    a = 1.5 * np.sqrt(3.0 / np.prod(shape[:-1]))  # kernels: outputs of order one
    return rng.uniform(-a, a, shape)


def write_h5(path, cfg, W):
    """A legacy .h5 as tf.keras 2.15's save_model writes it (no optimizer weights)."""
    vstr = h5py.string_dtype()
    with h5py.File(path, 'w') as f:
        f.attrs['backend'] = 'tensorflow'
        f.attrs['keras_version'] = KV
        f.attrs['model_config'] = json.dumps(cfg)
        f.attrs['training_config'] = json.dumps(TRAINING)
        g = f.create_group('model_weights')
        names = [l['config']['name'] for l in cfg['config']['layers']]
        g.attrs['backend'] = 'tensorflow'
        g.attrs['keras_version'] = KV
        g.attrs.create('layer_names', np.array(names, dtype=object), dtype=vstr)
        for n in names:
            lg = g.create_group(n)
            ws = W.get(n, [])
            if not ws:
                lg.attrs['weight_names'] = np.zeros((0,), dtype=np.float64)
                continue
            lg.attrs.create('weight_names', np.array(['%s/%s:0' % (n, w) for w, _ in ws],
                                                     dtype=object), dtype=vstr)
            sg = lg.create_group(n)
            for w, shape in ws:
                sg.create_dataset(w + ':0', data=np.asarray(value(w, shape), dtype=np.float32))
        g.create_group('top_level_model_weights').attrs['weight_names'] = np.zeros((0,))


INIT3 = {'GlorotUniform': {'seed': None}, 'Zeros': {}, 'Ones': {}}
DTYPE3 = {'module': 'keras', 'class_name': 'DTypePolicy', 'config': {'name': 'float32'},
          'registered_name': None}


def keras3(cfg, shapes):
    """The tf.keras 2.15 config as Keras 3.13 writes it; shapes: each layer's output shape."""
    def tensor(name, node=0):
        return {'class_name': '__keras_tensor__',
                'config': {'shape': [None] + list(shapes[name]), 'dtype': 'float32',
                           'keras_history': [name, node, 0]}}
    out = []
    for l in cfg['config']['layers']:
        c = copy.deepcopy(l['config'])
        name = c['name']
        if l['class_name'] == 'InputLayer':
            out.append({'module': 'keras.layers', 'class_name': 'InputLayer',
                        'config': {'batch_shape': c['batch_input_shape'], 'dtype': 'float32',
                                   'sparse': False, 'ragged': False, 'name': name,
                                   'optional': False},
                        'registered_name': None, 'name': name, 'inbound_nodes': []})
            continue
        c['dtype'] = DTYPE3
        c.pop('causal', None)  # not a Keras 3 argument
        for k, v in list(c.items()):
            if isinstance(v, dict) and v.get('class_name') in INIT3:
                c[k] = {'module': 'keras.initializers', 'class_name': v['class_name'],
                        'config': INIT3[v['class_name']], 'registered_name': None}
        if l['class_name'] == 'LayerNormalization':
            c['rms_scaling'] = False
        if l['class_name'] == 'Dense':
            c['quantization_config'] = None
        # one inbound node per call (a shared layer has several), refs [layer, node, tensor]
        nodes = []
        for call in l['inbound_nodes']:
            many = len(call) > 1
            args = ([[tensor(i[0], i[1]) for i in call]] if many
                    else [tensor(call[0][0], call[0][1])])
            nodes.append({'args': args, 'kwargs': {}})
        srcs = [i[0] for i in l['inbound_nodes'][0]]
        ins = [[None] + list(shapes[n]) for n in srcs]
        out.append({'module': 'keras.layers', 'class_name': l['class_name'], 'config': c,
                    'registered_name': None,
                    'build_config': {'input_shape': ins if len(srcs) > 1 else ins[0]},
                    'name': name, 'inbound_nodes': nodes})
    return {'module': 'keras.src.models.functional', 'class_name': 'Functional',
            'config': {'name': cfg['config']['name'], 'trainable': True, 'layers': out,
                       'input_layers': cfg['config']['input_layers'],
                       'output_layers': cfg['config']['output_layers']},
            'registered_name': 'Functional', 'build_config': {'input_shape': None},
            'compile_config': {
                'optimizer': {'module': 'keras.optimizers', 'class_name': 'Adam', 'config': {
                    'name': 'adam', 'learning_rate': 0.01, 'weight_decay': None,
                    'clipnorm': None, 'global_clipnorm': None, 'clipvalue': None,
                    'use_ema': False, 'ema_momentum': 0.99, 'ema_overwrite_frequency': None,
                    'loss_scale_factor': None, 'gradient_accumulation_steps': None,
                    'beta_1': 0.9, 'beta_2': 0.999, 'epsilon': 1e-07, 'amsgrad': False},
                    'registered_name': None},
                'loss': 'categorical_crossentropy', 'loss_weights': None,
                'metrics': ['accuracy'], 'weighted_metrics': None, 'run_eagerly': False,
                'steps_per_execution': 1, 'jit_compile': False}}


def write_keras(path, cfg3, h5path):
    """A .keras zip whose model.weights.h5 holds the .h5 file's weights, keyed as Keras 3 does."""
    buf = io.BytesIO()
    with h5py.File(h5path, 'r') as src, h5py.File(buf, 'w') as f:
        mw = src['model_weights']
        lg = f.create_group('layers')
        used = {}
        for l in cfg3['config']['layers']:
            key = h5_to_tfjs.snake(l['class_name'])
            used[key] = used.get(key, -1) + 1
            if used[key]:
                key = '%s_%d' % (key, used[key])
            v = lg.create_group(key).create_group('vars')
            v.attrs['name'] = l['name']
            names = [n if isinstance(n, str) else n.decode()
                     for n in mw[l['name']].attrs['weight_names']]
            for i, wn in enumerate(names):
                v.create_dataset(str(i), data=mw[l['name']][wn][()])
        f.create_group('vars').attrs['name'] = cfg3['config']['name']
    with zipfile.ZipFile(path, 'w') as z:  # fixed entry times: the same bytes on every run
        for n, data in (('metadata.json', json.dumps({'keras_version': '3.13.2',
                                                      'date_saved': '2026-12-03@12:00:00'})),
                        ('config.json', json.dumps(cfg3)), ('model.weights.h5', buf.getvalue())):
            z.writestr(zipfile.ZipInfo(n, date_time=(2026, 12, 3, 12, 0, 0)), data)


def shapes_of(path, x, inputs=('input_1',)):
    """Each layer's output shape (batch excluded), from a numpy pass; x: the input or a list of
    them (the model's inputs, named `inputs`)."""
    xs = x if isinstance(x, list) else [x]
    shapes = {}
    base = npref20.npref.layer_call

    def rec(cls, c, W, xs, kmajor, kwargs):
        y = base(cls, c, W, xs, kmajor, kwargs)
        shapes[c['name']] = y.shape[1:]
        return y
    npref20.npref.layer_call = rec
    try:
        npref20.npref.forward(path, [v.astype(np.float64) for v in xs])
    finally:
        npref20.npref.layer_call = base
    for n, v in zip(inputs, xs):
        shapes[n] = v.shape[1:]
    return shapes


def tfjs(path, x, out, swap):
    js = out + '.model.json'
    h5_to_tfjs.main(path, js)
    m = json.load(open(js))
    for l in m['modelTopology']['config']['layers']:
        if l['class_name'] in swap:
            l['class_name'] = swap[l['class_name']]
    json.dump(m, open(js, 'w'))
    res = out + '.json'
    subprocess.run(['node', os.path.join(TOOLS, 'predict.js'), js, x, res], check=True)
    r = json.load(open(res))
    os.remove(js)
    os.remove(res)
    return np.array(r['data'], dtype=np.float32).reshape(r['shape'])


def main():
    os.chdir(HERE)
    for name, make, ref in (('tfk2_prelu_crop_permute_maxmin', model_a, 'tfjs'),
                            ('tfk2_additive_concat_attention', model_b, 'numpy')):
        cfg, W, shape = make()
        write_h5(name + '.h5', cfg, W)
        x = np.random.default_rng(1234).random([8] + shape, dtype=np.float32)
        np.save(name + '.x.npy', x)
        npy = npref20.npref.forward(name + '.h5', [x.astype(np.float64)]).astype(np.float32)
        if ref == 'tfjs':
            y = tfjs(name + '.h5', name + '.x.npy', name, {'SpatialDropout2D': 'Dropout'})
            print('%s: TF.js vs npref20 max |diff| %.3g' % (name, float(np.abs(y - npy).max())))
        else:
            y = npy
        np.save('%s.%s.npy' % (name, ref), y)
        print(name, ref, y.shape, 'outputs', np.round(y, 3).tolist()[:2])
        # the same model as Keras 3.13 writes it
        k3 = 'k3' + name[4:]
        write_keras(k3 + '.keras', keras3(cfg, shapes_of(name + '.h5', x)), name + '.h5')
        np.save(k3 + '.x.npy', x)
        np.save('%s.%s.npy' % (k3, ref), y)
        if ref == 'tfjs':
            y3 = tfjs(k3 + '.keras', k3 + '.x.npy', k3, {'SpatialDropout2D': 'Dropout'})
        else:
            y3 = npref20.npref.forward(k3 + '.keras', [x.astype(np.float64)]).astype(np.float32)
        print('%s: %s on the .keras file vs the .h5 reference: max |diff| %.3g'
              % (k3, ref, float(np.abs(y3 - y).max())))


if __name__ == '__main__':
    main()
