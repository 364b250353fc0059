/* The job settings' help text, generated from ddts_job_settings() (src/job/job.c);
 * tests/integration/test_job_flags.sh checks that the two agree. Append it to a
 * command's usage text: cli_usage_server[] = "usage: ..." CLI_JOB_FLAGS_HELP; */
#ifndef DDTS_CLI_JOB_HELP_H
#define DDTS_CLI_JOB_HELP_H

#define CLI_JOB_FLAGS_HELP                                                                         \
    "  --job FILE                 read settings from a JSON job file (flags override it)\n"        \
    "  --host ADDR                address the server listens on [0.0.0.0]\n"                       \
    "  --port N                   TCP port the server listens on (0: any free port) [7878]\n"      \
    "  --collect                  collect an earlier job's results from its clients [off]\n"       \
    "  --passphrase-file FILE     file holding the passphrase (else $DDTS_PASSPHRASE, a prompt)\n" \
    "  --model PATH               Keras .h5 or .keras file, or a folder holding some [required]\n" \
    "  --clients N                number of clients that share the data [required]\n"              \
    "  --epochs N                 epochs, as in Keras fit [10]\n"                                  \
    "  --batch-size N             batch size, as in Keras fit [32]\n"                              \
    "  --optimizer NAME           Keras optimizer: adam, sgd, rmsprop, ... [model's, else adam]\n" \
    "  --loss NAME                Keras loss: categorical_crossentropy, mse, ... [the model's]\n"  \
    "  --normalizer KIND          none, simple (x/max|x|), minmax or zscore (0-3) [none]\n"        \
    "  --method M                 fit or kfold (2 = fit, 1 = kfold) [fit]\n"                       \
    "  --folds K                  folds of k-fold cross-validation [10]\n"                         \
    "  --data SRC                 server (its DIR/X, DIR/Y), client (their own), keras (1-3) "     \
    "[server]\n"                                                                                   \
    "  --dataset DIR              folder holding X/ and Y/ (X2/, X3/...: further inputs)\n"        \
    "  --keras-dataset NAME       Keras dataset (mnist, fashion_mnist, cifar10, ...)\n"            \
    "  --samples N                training samples the job uses (0: all) [all]\n"                  \
    "  --order XY|XX              XY: predict Y from X; XX: reconstruct X (autoencoder) [XY]\n"    \
    "  --learning-rate F          learning rate [optimizer's default]\n"                           \
    "  --metrics LIST             comma-separated Keras metrics [accuracy where it applies]\n"     \
    "  --validation-split F       fraction held out on each client [0.3]\n"                        \
    "  --sync MODE                none, epoch, steps:K or step: when weights are averaged "        \
    "[epoch]\n"                                                                                    \
    "  --seed N                   same seed, clients and data: same results [random, printed]\n"   \
    "  --workdir DIR              job state and results [./ddts-work]\n"                           \
    "  --name NAME                job name (folder under --workdir) [the model's file name]\n"     \
    "  --ban-after N              failed handshakes before an address is refused [3]\n"            \
    "  --client-timeout SECONDS   silence before a client's share moves on [120]\n"                \
    "  --threads N                compute threads per process (0: all cores) [0]\n"                \
    "  --keep-serving             stay up after the job is done [off]\n"                           \
    "  --io-timeout SECONDS       limit of every network read and write [30]\n"                    \
    "  --x-key NAME               array taken from .npz files in DIR/X [x or x_train]\n"           \
    "  --y-key NAME               array taken from .npz files in DIR/Y [y or y_train]\n"           \
    "  --num-words N              imdb, reuters: keep the N most frequent words (0: all) [all]\n"  \
    "  --skip-top N               imdb, reuters: drop the N most frequent words [0]\n"             \
    "  --maxlen N                 imdb, reuters: drop longer sequences, pad to N [the longest]\n"  \
    "  --label-mode MODE          cifar100: fine (100 classes) or coarse (20) [fine]\n"            \
    "  --monitor NAME             best model by: val_loss, val_accuracy, val_mae, ... "            \
    "[val_accuracy, else val_loss]\n"                                                              \
    "  --resume                   continue the job in --workdir with its recorded settings "       \
    "[off]\n"

#endif
