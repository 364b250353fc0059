#!/usr/bin/env python3
"""make_fixtures.py: writes the shared-layer fixtures of this folder (run it here, with Debian's
python3-h5py/numpy and NODE_PATH pointing at an `npm install @tensorflow/tfjs@4.22.0`):

  NODE_PATH=/work/tfjs/node_modules /usr/bin/python3 make_fixtures.py

tfk2_siamese_shared / k3_siamese_shared, a siamese model: two inputs through one Conv2D /
MaxPooling2D / Flatten / Dense stack (each layer called twice on one set of weights), a shared
Dense `proj` called three times (on both embeddings, then on their product, a call whose input
comes later in the layer list, so a loader must wait for it as Keras' from_config does),
Multiply, Dot, Concatenate, Dense softmax (TF.js has no Subtract layer).

tfk2_siamese_nested / k3_siamese_nested, the common siamese form: a nested Functional model
`base` (Input 10 -> Dense 8 relu -> Dense 4 tanh) called on both inputs, Concatenate and Dot of
the two embeddings, Dense softmax. Keras names the calls of a nested model built on an Input
["base", 1, 0] and ["base", 2, 0] (its own first node is not saved); its weights are stored once:
the .h5's group `base` with weight_names h/kernel:0, ...; the .keras file's
layers/functional/layers/dense[_1]/vars.

The files are written by tests/data/keras20/make_fixtures.py's code (imported): the .h5 as
tf.keras 2.15 saves it (a shared layer is one layer entry whose inbound_nodes list one node per
call; later layers name a call by its node index, ["proj", 2, 0, {}]), the .keras as Keras 3.13
does (one {"args", "kwargs"} per call, keras_history [name, node index, tensor index]), one set of
weights per layer in each. Weights: make_fixtures' value() (numpy.random.default_rng(20));
inputs: default_rng(1234), 8 samples each, uniform [0, 1).

  NAME.h5 / NAME.keras   the model
  NAME.x0.npy, .x1.npy   its two inputs, in its input order
  NAME.tfjs.npy          TensorFlow.js 4.22 predictions (CPU); npref_shared.py (float64 numpy,
                         the shared tools' graph walk) agrees, printed
"""
import copy
import io
import json
import os
import sys
import zipfile

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'keras20'))
import make_fixtures as k20  # noqa: E402
import npref_shared  # noqa: E402,F401  (nested models' node indices, for k20.shapes_of)

NAME = 'tfk2_siamese_shared'
NESTED = 'tfk2_siamese_nested'


def call(cls, name, calls, **cfg):
    """A layer entry called once per element of calls (each a list of (layer, node index))."""
    l = k20.layer(cls, name, None, **cfg)
    l['inbound_nodes'] = [[[n, k, 0, {}] for n, k in c] for c in calls]
    return l


def shared(entry, calls):
    entry['inbound_nodes'] = [[[n, k, 0, {}] for n, k in c] for c in calls]
    return entry


def inp(name, shape):
    return {'class_name': 'InputLayer', 'name': name, 'inbound_nodes': [],
            'config': {'batch_input_shape': [None] + shape, 'dtype': 'float32', 'sparse': False,
                       'ragged': False, 'name': name}}


def siamese():
    two = lambda n: [[(n, 0)], [(n, 1)]]  # noqa: E731
    conv = k20.conv('conv', 'left', 4)
    conv['config']['activation'] = 'relu'
    L = [inp('left', [8, 8, 2]), inp('right', [8, 8, 2]),
         shared(conv, [[('left', 0)], [('right', 0)]]),
         call('MaxPooling2D', 'pool', two('conv'), pool_size=[2, 2], padding='valid',
              strides=[2, 2], data_format='channels_last'),
         call('Flatten', 'flatten', two('pool'), data_format='channels_last'),
         shared(k20.dense('embed', 'flatten', 6, 'tanh'), two('flatten')),
         shared(k20.dense('proj', 'embed', 6, 'linear'),
                [[('embed', 0)], [('embed', 1)], [('multiply', 0)]]),
         call('Multiply', 'multiply', [[('proj', 0), ('proj', 1)]]),
         call('Dot', 'dot', [[('proj', 0), ('proj', 1)]], axes=1, normalize=False),
         call('Concatenate', 'concatenate', [[('proj', 2), ('dot', 0)]], axis=-1),
         k20.dense('out', 'concatenate', 3, 'softmax')]
    W = {'conv': [('kernel', (3, 3, 2, 4)), ('bias', (4,))],
         'embed': [('kernel', (64, 6)), ('bias', (6,))],
         'proj': [('kernel', (6, 6)), ('bias', (6,))],
         'out': [('kernel', (7, 3)), ('bias', (3,))]}
    cfg = {'class_name': 'Functional',
           'config': {'name': 'siamese', 'trainable': True, 'layers': L,
                      'input_layers': [['left', 0, 0], ['right', 0, 0]],
                      'output_layers': [['out', 0, 0]]},
           'keras_version': k20.KV, 'backend': 'tensorflow'}
    return cfg, W


def nested():
    """The common siamese form: a model `base` (Input 10 -> Dense h 8 relu -> Dense e 4 tanh)
    called on both inputs (refs ["base", 1, 0] and ["base", 2, 0]: Keras counts a nested
    model's own first node), Concatenate and Dot of the two embeddings, Dense softmax."""
    base = {'class_name': 'Functional', 'name': 'base',
            'config': {'name': 'base', 'trainable': True,
                       'layers': [inp('base_in', [10]), k20.dense('h', 'base_in', 8, 'relu'),
                                  k20.dense('e', 'h', 4, 'tanh')],
                       'input_layers': [['base_in', 0, 0]], 'output_layers': [['e', 0, 0]]},
            'inbound_nodes': [[['left', 0, 0, {}]], [['right', 0, 0, {}]]]}
    L = [inp('left', [10]), inp('right', [10]), base,
         call('Concatenate', 'concatenate', [[('base', 1), ('base', 2)]], axis=-1),
         call('Dot', 'dot', [[('base', 1), ('base', 2)]], axes=1, normalize=False),
         call('Concatenate', 'both', [[('concatenate', 0), ('dot', 0)]], axis=-1),
         k20.dense('out', 'both', 3, 'softmax')]
    W = {'out': [('kernel', (9, 3)), ('bias', (3,))]}
    inner = [('h', [('kernel', (10, 8)), ('bias', (8,))]),
             ('e', [('kernel', (8, 4)), ('bias', (4,))])]
    cfg = {'class_name': 'Functional',
           'config': {'name': 'siamese_nested', 'trainable': True, 'layers': L,
                      'input_layers': [['left', 0, 0], ['right', 0, 0]],
                      'output_layers': [['out', 0, 0]]},
           'keras_version': k20.KV, 'backend': 'tensorflow'}
    return cfg, W, inner


def write_nested_h5(path, cfg, W, inner):
    """k20.write_h5, then the nested model's group as tf.keras writes it: one group `base` whose
    weight_names are paths inside it (h/kernel:0, ...)."""
    k20.write_h5(path, cfg, W)
    with h5py.File(path, 'a') as f:
        g = f['model_weights/base']
        names = ['%s/%s:0' % (l, w) for l, ws in inner for w, _ in ws]
        g.attrs.create('weight_names', np.array(names, dtype=object), dtype=h5py.string_dtype())
        for l, ws in inner:
            for w, shape in ws:
                g.create_dataset('%s/%s:0' % (l, w),
                                 data=np.asarray(k20.value(w, shape), dtype=np.float32))


def write_nested_keras(path, cfg, shapes, h5path):
    """The model as Keras 3.13 writes it: k20.keras3() on the outer and the nested config, and
    model.weights.h5 with the nested model's layers under layers/functional/layers/dense[_1]."""
    inner = copy.deepcopy([l for l in cfg['config']['layers'] if l['name'] == 'base'][0])
    k3 = k20.keras3(cfg, shapes)
    k3in = k20.keras3(inner, shapes)
    for l in k3['config']['layers']:
        if l['name'] == 'base':
            l.update({'module': 'keras.src.models.functional', 'class_name': 'Functional',
                      'registered_name': 'Functional', 'config': k3in['config']})
            l['config']['trainable'] = True
    buf = io.BytesIO()
    with h5py.File(h5path, 'r') as src, h5py.File(buf, 'w') as f:
        mw = src['model_weights']
        top = f.create_group('layers')
        for key, name in (('functional', 'base'), ('concatenate', None), ('dot', None),
                          ('concatenate_1', None), ('dense', 'out')):
            g = top.create_group(key)
            v = g.create_group('vars')
            if key == 'functional':
                inner_g = g.create_group('layers')
                for ik, il in (('dense', 'h'), ('dense_1', 'e')):
                    iv = inner_g.create_group(ik).create_group('vars')
                    for i, w in enumerate(('kernel', 'bias')):
                        iv.create_dataset(str(i), data=mw['base/%s/%s:0' % (il, w)][()])
            elif name is not None:
                for i, w in enumerate(('kernel', 'bias')):
                    v.create_dataset(str(i), data=mw['%s/%s/%s:0' % (name, name, w)][()])
        f.create_group('vars')
    with zipfile.ZipFile(path, 'w') as z:  # fixed entry times: the same bytes on every run
        for n, data in (('metadata.json', json.dumps({'keras_version': '3.13.2',
                                                      'date_saved': '2026-12-03@12:00:00'})),
                        ('config.json', json.dumps(k3)), ('model.weights.h5', buf.getvalue())):
            z.writestr(zipfile.ZipInfo(n, date_time=(2026, 12, 3, 12, 0, 0)), data)


def make_nested():
    cfg, W, inner = nested()
    write_nested_h5(NESTED + '.h5', cfg, W, inner)
    r = np.random.default_rng(1234)
    xs = [r.random([8, 10], dtype=np.float32) for _ in range(2)]
    paths = []
    for i, x in enumerate(xs):
        paths.append('%s.x%d.npy' % (NESTED, i))
        np.save(paths[-1], x)
    npy = npref_shared.forward(NESTED + '.h5', [x.astype(np.float64) for x in xs])
    y = k20.tfjs(NESTED + '.h5', ','.join(paths), NESTED, {})
    print('%s: TF.js vs npref_shared max |diff| %.3g' % (NESTED, float(np.abs(y - npy).max())))
    np.save(NESTED + '.tfjs.npy', y)
    k3 = 'k3' + NESTED[4:]
    shapes = k20.shapes_of(NESTED + '.h5', xs, ('left', 'right'))
    shapes.update(base_in=(10,), base=(4,))  # (a nested model's output is not a layer call)
    write_nested_keras(k3 + '.keras', cfg, shapes, NESTED + '.h5')
    for i, x in enumerate(xs):
        np.save('%s.x%d.npy' % (k3, i), x)
    np.save(k3 + '.tfjs.npy', y)
    y3 = k20.tfjs(k3 + '.keras', ','.join('%s.x%d.npy' % (k3, i) for i in range(2)), k3, {})
    n3 = npref_shared.forward(k3 + '.keras', [x.astype(np.float64) for x in xs])
    print('%s: TF.js on the .keras file vs the .h5 reference: max |diff| %.3g, npref_shared %.3g'
          % (k3, float(np.abs(y3 - y).max()), float(np.abs(n3 - y).max())))


def make_siamese():
    cfg, W = siamese()
    k20.write_h5(NAME + '.h5', cfg, W)
    r = np.random.default_rng(1234)
    xs = [r.random([8, 8, 8, 2], dtype=np.float32) for _ in range(2)]
    paths = []
    for i, x in enumerate(xs):
        paths.append('%s.x%d.npy' % (NAME, i))
        np.save(paths[-1], x)
    npy = k20.npref20.npref.forward(NAME + '.h5', [x.astype(np.float64) for x in xs])
    y = k20.tfjs(NAME + '.h5', ','.join(paths), NAME, {})
    print('%s: TF.js vs npref20 max |diff| %.3g' % (NAME, float(np.abs(y - npy).max())))
    np.save(NAME + '.tfjs.npy', y)
    # the same model as Keras 3.13 writes it
    k3 = 'k3' + NAME[4:]
    shapes = k20.shapes_of(NAME + '.h5', xs, ('left', 'right'))
    k20.write_keras(k3 + '.keras', k20.keras3(cfg, shapes), NAME + '.h5')
    for i, x in enumerate(xs):
        np.save('%s.x%d.npy' % (k3, i), x)
    np.save(k3 + '.tfjs.npy', y)
    y3 = k20.tfjs(k3 + '.keras', ','.join('%s.x%d.npy' % (k3, i) for i in range(2)), k3, {})
    print('%s: TF.js on the .keras file vs the .h5 reference: max |diff| %.3g'
          % (k3, float(np.abs(y3 - y).max())))


def main():
    os.chdir(HERE)
    make_siamese()
    make_nested()


if __name__ == '__main__':
    main()
