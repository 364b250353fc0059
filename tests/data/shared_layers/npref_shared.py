#!/usr/bin/env python3
"""npref_shared.py MODEL X0,X1 [OUT.npy]: float64 numpy forward pass of a Keras file, as
tests/data/keras20/npref20.py (imported: the shared tools' npref.py with the issue-20 forms),
plus the node indices of a nested model called several times.

npref.py keys a layer's calls by their position in its inbound_nodes; Keras names a call of a
model built on an Input one higher (the node linking the model's input to its output comes first
and is not saved: Keras' _should_skip_first_node; tf.keras: a model whose first layer is an
InputLayer, Keras 3: a Functional). The refs to such a layer are shifted down by one here
before npref.py's graph walk reads them. Written from the Keras serialization code,
independently of ddts' C code."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'keras20'))
import npref20  # noqa: E402

npref = npref20.npref
BASE = {}
_node_inputs, _triples, _forward = npref.node_inputs, npref.triples, npref.forward


def node_inputs(node):
    refs, kw = _node_inputs(node)
    return [(n, i - BASE.get(n, 0), j) for n, i, j in refs], kw


def triples(v):
    return [(n, i - BASE.get(n, 0), j) for n, i, j in _triples(v)]


def first_node(l, kmajor):
    c = l['config']
    layers = c['layers'] if isinstance(c, dict) else c
    if kmajor >= 3:
        return int(l['class_name'] in ('Functional', 'Model'))
    return int(bool(layers) and layers[0]['class_name'] == 'InputLayer')


def forward(p, xs):
    kmajor, cfg, _ = npref.load(p)
    BASE.clear()

    def walk(l):
        c = l['config']
        for sl in (c['layers'] if isinstance(c, dict) else c):
            if sl['class_name'] in npref.NESTED:
                BASE[sl['config']['name']] = first_node(sl, kmajor)
                walk(sl)
    walk(cfg)
    return _forward(p, xs)


npref.node_inputs, npref.triples, npref.forward = node_inputs, triples, forward

if __name__ == '__main__':
    import numpy as np
    xs = [np.load(q).astype(np.float64) for q in sys.argv[2].split(',')]
    y = forward(sys.argv[1], xs)
    if len(sys.argv) > 3:
        np.save(sys.argv[3], y.astype(np.float32))
    print(sys.argv[1], 'numpy', y.shape)
