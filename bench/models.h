/* The engine benchmark's models (issue 3) as Keras configurations, shared by
 * bench_engine and bench_fidelity: the MLP 784-256-128-10 and the CNN
 * Conv(32,3x3,relu)-MaxPool(2)-Conv(64,3x3,relu)-MaxPool(2)-Flatten-Dense(128,relu)-Dense(10). */
#ifndef DDTS_BENCH_MODELS_H
#define DDTS_BENCH_MODELS_H

static const char *MLP =
    "{\"class_name\":\"Sequential\",\"config\":{\"name\":\"mlp\",\"layers\":["
    "{\"class_name\":\"Flatten\",\"config\":{\"name\":\"flatten\",\"batch_input_shape\":[null,28,"
    "28,1]}},"
    "{\"class_name\":\"Dense\",\"config\":{\"name\":\"d1\",\"units\":256,\"activation\":\"relu\"}},"
    "{\"class_name\":\"Dense\",\"config\":{\"name\":\"d2\",\"units\":128,\"activation\":\"relu\"}},"
    "{\"class_name\":\"Dense\",\"config\":{\"name\":\"d3\",\"units\":10,\"activation\":"
    "\"softmax\"}}]}}";

static const char *CNN =
    "{\"class_name\":\"Sequential\",\"config\":{\"name\":\"cnn\",\"layers\":["
    "{\"class_name\":\"InputLayer\",\"config\":{\"name\":\"in\",\"batch_input_shape\":[null,28,28,"
    "1]}},"
    "{\"class_name\":\"Conv2D\",\"config\":{\"name\":\"c1\",\"filters\":32,\"kernel_size\":[3,3],"
    "\"activation\":\"relu\"}},"
    "{\"class_name\":\"MaxPooling2D\",\"config\":{\"name\":\"p1\",\"pool_size\":[2,2]}},"
    "{\"class_name\":\"Conv2D\",\"config\":{\"name\":\"c2\",\"filters\":64,\"kernel_size\":[3,3],"
    "\"activation\":\"relu\"}},"
    "{\"class_name\":\"MaxPooling2D\",\"config\":{\"name\":\"p2\",\"pool_size\":[2,2]}},"
    "{\"class_name\":\"Flatten\",\"config\":{\"name\":\"f\"}},"
    "{\"class_name\":\"Dense\",\"config\":{\"name\":\"d1\",\"units\":128,\"activation\":\"relu\"}},"
    "{\"class_name\":\"Dense\",\"config\":{\"name\":\"d2\",\"units\":10,\"activation\":"
    "\"softmax\"}}]}}";

#endif
