// Reference outputs of Keras' Conv3D, MaxPooling3D and AveragePooling3D from
// TensorFlow.js (an independent implementation of the Keras layers API), for
// tests/unit/test_nn_forward.c. Run once:
//   NODE_PATH=DIR/node_modules node make_conv3d_refs.js > conv3d_refs.inc
// (DIR holds npm @tensorflow/tfjs 4.22.0). Inputs and weights are fixed
// formulas the C test rebuilds: x[i] = sin(0.37 i + 0.1) over (batch 2,
// D, H, W, C); kernel[i] = 0.3 cos(0.21 i) in Keras' (kd, kh, kw, C, F)
// order; bias[f] = 0.1 f - 0.05.
const tf = require('@tensorflow/tfjs');
tf.setBackend('cpu');
const cases = [
  {cls: 'Conv3D', shape: [5, 4, 5, 2], cfg: {filters: 3, kernelSize: [2, 3, 2], strides: [2, 1, 2], padding: 'same'},
   json: '"filters":3,"kernel_size":[2,3,2],"strides":[2,1,2],"padding":"same"'},
  {cls: 'Conv3D', shape: [6, 5, 6, 1], cfg: {filters: 2, kernelSize: 2, dilationRate: [2, 1, 2], useBias: false},
   json: '"filters":2,"kernel_size":2,"dilation_rate":[2,1,2],"use_bias":false'},
  {cls: 'MaxPooling3D', shape: [4, 3, 4, 2], cfg: {poolSize: [2, 3, 2], strides: [1, 1, 1], padding: 'same'},
   json: '"pool_size":[2,3,2],"strides":[1,1,1],"padding":"same"'},
  {cls: 'MaxPooling3D', shape: [5, 5, 3, 2], cfg: {poolSize: [2, 2, 2], padding: 'same'},
   json: '"pool_size":[2,2,2],"padding":"same"'},
  {cls: 'AveragePooling3D', shape: [5, 5, 3, 2], cfg: {poolSize: [2, 2, 2], padding: 'same'},
   json: '"pool_size":[2,2,2],"padding":"same"'},
  {cls: 'AveragePooling3D', shape: [6, 4, 5, 2], cfg: {poolSize: [3, 2, 2], strides: [2, 1, 1]},
   json: '"pool_size":[3,2,2],"strides":[2,1,1]'},
];
const out = ['/* Made by make_conv3d_refs.js (TensorFlow.js ' + tf.version.tfjs + '): do not edit. */'];
const list = (v) => '{' + v.join(', ') + '}';
function formula(n, f) {
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = f(i);
  return v;
}
for (const c of cases) {
  const n = 2 * c.shape.reduce((p, q) => p * q, 1);
  const x = tf.tensor(formula(n, i => Math.sin(0.37 * i + 0.1)), [2].concat(c.shape));
  const make = {Conv3D: tf.layers.conv3d, MaxPooling3D: tf.layers.maxPooling3d,
                AveragePooling3D: tf.layers.averagePooling3d}[c.cls];
  const layer = make(Object.assign({inputShape: c.shape}, c.cfg));
  const model = tf.sequential({layers: [layer]});
  if (c.cls === 'Conv3D') {
    const ws = layer.getWeights().map((w, k) => k === 0
        ? tf.tensor(formula(w.size, i => 0.3 * Math.cos(0.21 * i)), w.shape)
        : tf.tensor(formula(w.size, f => 0.1 * f - 0.05), w.shape));
    layer.setWeights(ws);
  }
  const y = model.predict(x);
  const y32 = Array.from(y.dataSync()).map(v => v.toPrecision(9));
  out.push('{"' + c.cls + '", "' + c.shape.join(',') + '", "' + c.json.replace(/"/g, '\\"') + '", ' +
           y.shape.length + ', ' + list(y.shape) + ', ' + y32.length + ', ' + list(y32) + '},');
}
console.log(out.join('\n'));
