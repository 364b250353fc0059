// Reference outputs of the Keras Dot layer from TensorFlow.js (an independent
// implementation of the Keras layers API), for tests/unit/test_nn_forward.c.
// Run once: NODE_PATH=DIR/node_modules node make_dot_refs.js > dot_refs.inc
// (DIR holds npm @tensorflow/tfjs 4.22.0). Inputs are a fixed formula, so the
// C test rebuilds them without reading arrays: a[i] = sin(0.7 i + 0.3),
// b[i] = cos(1.3 i - 0.2), i the flat index over (batch 2, sample shape).
const tf = require('@tensorflow/tfjs');
tf.setBackend('cpu');
const cases = [
  {a: [4], b: [4], axes: 1, normalize: false},
  {a: [4], b: [4], axes: -1, normalize: true},
  {a: [2, 4], b: [3, 4], axes: 2, normalize: false},
  {a: [2, 4], b: [3, 4], axes: [2, 2], normalize: true},
  {a: [3, 4], b: [3, 5], axes: [1, 1], normalize: false},
  {a: [3, 4], b: [5, 3], axes: [1, 2], normalize: true},
  {a: [2, 4], b: [4], axes: [2, 1], normalize: false},
  {a: [4], b: [3, 4], axes: [1, -1], normalize: true},
];
function fill(shape, f) {
  const n = 2 * shape.reduce((p, q) => p * q, 1);
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = f(i);
  return tf.tensor(v, [2].concat(shape));
}
const out = ['/* Made by make_dot_refs.js (TensorFlow.js ' + tf.version.tfjs + '): do not edit. */'];
const list = (v) => '{' + v.join(', ') + '}';
for (const c of cases) {
  const a = fill(c.a, i => Math.sin(0.7 * i + 0.3));
  const b = fill(c.b, i => Math.cos(1.3 * i - 0.2));
  // TF.js 4.22 does not wrap negative axes in Dot.build; Keras takes them
  // modulo the rank: the layer is called with the wrapped ones.
  const ax = Array.isArray(c.axes) ? c.axes : [c.axes, c.axes];
  const wrapped = [ax[0] < 0 ? ax[0] + c.a.length + 1 : ax[0],
                   ax[1] < 0 ? ax[1] + c.b.length + 1 : ax[1]];
  const y = tf.layers.dot({axes: wrapped, normalize: c.normalize}).apply([a, b]);
  const ax2 = Array.isArray(c.axes) ? c.axes : [c.axes, c.axes];
  const axesJson = Array.isArray(c.axes) ? '[' + c.axes.join(',') + ']' : String(c.axes);
  const y32 = Array.from(y.dataSync()).map(v => v.toPrecision(9));
  out.push('{"' + c.a.join(',') + '", "' + c.b.join(',') + '", "' + axesJson + '", ' +
           (c.normalize ? 1 : 0) + ', ' + y.shape.length + ', ' + list(y.shape) + ', ' +
           y32.length + ', ' + list(y32) + '},');
  void ax2;
}
console.log(out.join('\n'));
