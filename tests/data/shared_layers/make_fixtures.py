#!/usr/bin/env python3
"""make_fixtures.py: writes the shared-layer fixtures of this folder (run it here, with Debian's
python3-h5py/numpy and NODE_PATH pointing at an `npm install @tensorflow/tfjs@4.22.0`):

  NODE_PATH=/work/tfjs/node_modules /usr/bin/python3 make_fixtures.py

A siamese model: two inputs through one Conv2D / MaxPooling2D / Flatten / Dense stack (each layer
called twice on one set of weights), a shared Dense `proj` called three times (on both embeddings,
then on their product, a call whose input comes later in the layer list, so a loader must wait
for it as Keras' from_config does), Multiply, Dot, Concatenate, Dense softmax (TF.js has no
Subtract layer).

The files are written by tests/data/keras20/make_fixtures.py's code (imported): the .h5 as
tf.keras 2.15 saves it (a shared layer is one layer entry whose inbound_nodes list one node per
call; later layers name a call by its node index, ["proj", 2, 0, {}]), the .keras as Keras 3.13
does (one {"args", "kwargs"} per call, keras_history [name, node index, tensor index]), one set of
weights per layer in each. Weights: make_fixtures' value() (numpy.random.default_rng(20));
inputs: default_rng(1234), 8 samples each, uniform [0, 1).

  NAME.h5 / NAME.keras   the model
  NAME.x0.npy, .x1.npy   its two inputs, in its input order
  NAME.tfjs.npy          TensorFlow.js 4.22 predictions (CPU); npref20.py (float64 numpy, the
                         shared tools' graph walk) agrees, printed
"""
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'keras20'))
import make_fixtures as k20  # noqa: E402

NAME = 'tfk2_siamese_shared'


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


def main():
    os.chdir(HERE)
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


if __name__ == '__main__':
    main()
