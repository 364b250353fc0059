/*
 * Every limit of ddts in one place, each with its reason. Inputs beyond a
 * limit get DDTS_ELIMIT and a message naming the limit, before any large
 * allocation.
 */
#ifndef DDTS_LIMITS_H
#define DDTS_LIMITS_H

/* Tensors: Keras models here use at most 5 dimensions (N, D, H, W, C). */
#define DDTS_MAX_RANK 8

/* Data arrays: rank of arrays in data files (npy allows 32; we need few). */
#define DDTS_MAX_ARRAY_RANK 8

/* A single data array: 64 GiB is beyond any machine this targets. */
#define DDTS_MAX_ARRAY_BYTES (64ULL << 30)

/* npy headers are at most 64 KiB in version 1.0; version 2/3 allow 4 GiB,
 * but no real header needs more than a few hundred bytes. */
#define DDTS_MAX_NPY_HEADER (1u << 16)

/* Zip: members beyond this uncompressed size or ratio are a zip bomb. */
#define DDTS_MAX_ZIP_RATIO   1100
#define DDTS_MAX_ZIP_MEMBERS 65536

/* CSV/XLSX: longest cell and widest row we accept. */
#define DDTS_MAX_CELL_BYTES (1u << 20)
#define DDTS_MAX_COLUMNS    (1u << 20)

/* XLSX: an XML member (a sheet) streams, so it may be large; shared strings
 * are held in memory and numeric sheets need few. */
#define DDTS_MAX_XLSX_XML     (16ULL << 30)
#define DDTS_MAX_XLSX_STRINGS (256u << 20)

/* Downloads of Keras datasets: the largest Keras dataset file is ~170 MB. */
#define DDTS_MAX_DOWNLOAD (512ULL << 20)

/* Data folders: files per X/ or Y/ folder (each is opened and held at once). */
#define DDTS_MAX_DATA_FILES 100000

/* Keras text datasets (imdb, reuters): word indices and padded lengths.
 * imdb has 88,584 words and reviews of up to 2,494 words; the bounds leave
 * room while keeping a hostile file from asking for absurd padding. */
#define DDTS_MAX_DATASET_WORDS   10000000
#define DDTS_MAX_SEQUENCE_LENGTH 1000000
/* A pickle (an npz object array; a CIFAR batch: 31 MB, cifar-100's train:
 * 155 MB; a CIFAR .tar.gz inflated: 178 MB) is read whole; the unpickler's
 * values take at most 16 bytes per input byte. */
#define DDTS_MAX_PICKLE_BYTES (256ULL << 20)

/* Keras files: config JSON and layer counts. */
#define DDTS_MAX_CONFIG_BYTES (64u << 20)
#define DDTS_MAX_LAYERS       100000
/* Inputs of one model (a recommender's two, a siamese network's two or three). */
#define DDTS_MAX_INPUTS 16

/* Keras files (keras_h5.c, keras_zip.c, keras_config.c). */
/* Names of layers and weights: real ones are a few dozen bytes. */
#define DDTS_MAX_KERAS_NAME 4096
/* Weights of one layer group: a nested model keeps all its weights in one
 * group, so this is generous (a ResNet-152 has about 900). */
#define DDTS_MAX_KERAS_WEIGHTS 65536
/* All weights of a model, in float32 values: 2^31 values (8 GiB) is beyond
 * any model ddts trains on a CPU. */
#define DDTS_MAX_KERAS_PARAMS (1ULL << 31)
/* A string attribute (model_config, training_config, layer_names, ...). */
#define DDTS_MAX_KERAS_ATTR_BYTES DDTS_MAX_CONFIG_BYTES
/* Models nested in models: real ones nest two or three deep; the bound
 * keeps recursion on hostile configs shallow. */
#define DDTS_MAX_KERAS_NESTING 32
/* model.weights.h5 inside a .keras zip is read into memory. */
#define DDTS_MAX_KERAS_FILE_BYTES (16ULL << 30)

/* Model parameters: 2^28 float32 weights (1 GiB) hold VGG-16 (138M) with room
 * to spare; a config asking for more is refused before any allocation.
 * Fuzzing builds lower it so that hostile configs cannot exhaust the fuzzer. */
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
#define DDTS_MAX_PARAMS (1ull << 22)
#else
#define DDTS_MAX_PARAMS (1ull << 28)
#endif

/* Wire: frames before authentication are tiny (a hello and CPace shares);
 * after it, a frame carries at most one chunk of a streamed transfer. */
#define DDTS_MAX_FRAME_PREAUTH 1024u
#define DDTS_MAX_FRAME         (16u << 20)

/* Network: default I/O timeout and heartbeat period, in seconds. */
#define DDTS_IO_TIMEOUT_S 30
#define DDTS_HEARTBEAT_S  5

/* Clients per job: the server handles at least 64 at once. */
#define DDTS_MAX_CLIENTS 1024

/*
 * Connections that have not authenticated yet: a few per address (one real
 * client needs one; a restart or a NAT a few more) and DDTS_MAX_PREAUTH in
 * all, each with the I/O timeout to authenticate from its turn (below). Beyond them a
 * connection is closed at accept, before a thread or any allocation, so idle
 * sockets from other addresses cannot lock a real client out.
 */
#define DDTS_MAX_PREAUTH_PER_ADDR 4
#define DDTS_MAX_PREAUTH          64
/*
 * Beyond those, connections wait their turn as bare sockets (no thread, no
 * buffer), up to 64 per address (many clients started at once on one
 * machine) and 256 in all; the rest are closed at accept.
 */
#define DDTS_MAX_QUEUED_PER_ADDR 64
#define DDTS_MAX_QUEUED          256
/*
 * Handshakes from one address run one at a time. A connection's I/O timeout
 * to authenticate counts from its turn, so that many clients started at once
 * on one machine do not run out of time in the queue; the wait for the turn
 * (as a bare socket and with a thread) is bounded apart, by this many I/O
 * timeouts from accept, so that idle sockets cannot hold slots for ever.
 */
#define DDTS_TURN_WAIT_FACTOR 8
/*
 * Failed authentication attempts (wrong passphrase, or a handshake stalled
 * past its deadline) the whole job accepts per minute, whatever the address:
 * beyond it new connections are refused until the minute has passed, so
 * rotating addresses gives an attacker no more than this many guesses a minute.
 */
#define DDTS_MAX_FAILED_AUTH_PER_MIN 30
/* Addresses the server remembers (failures, bans); an old idle one is
 * forgotten to make room, a banned one never. */
#define DDTS_MAX_PEERS 4096
/* Warning lines per address per interval; the rest are counted in one summary line. */
#define DDTS_WARN_BURST      20
#define DDTS_WARN_INTERVAL_S 60.0

/* history.csv: Keras logs a handful of metrics per epoch; 1024 columns and
 * 64 MiB (a million epochs) are far beyond any real history. */
#define DDTS_MAX_HISTORY_COLUMNS 1024
#define DDTS_MAX_HISTORY_BYTES   (64u << 20)

/* A training checkpoint (ddts train --distributed mpi): weights plus at most
 * three optimizer vectors of a model under the Keras file limit. */
#define DDTS_MAX_CHECKPOINT_BYTES (4 * DDTS_MAX_KERAS_FILE_BYTES)
/* --bucket-mb of ddts train --distributed mpi: a bucket of the gradient
 * exchange need not exceed the largest model (DDTS_MAX_PARAMS floats: 1 GiB);
 * a larger value is one bucket, i.e. a typo. */
#define DDTS_MAX_BUCKET_MB 1024

/* Default TCP port of the server (no IANA assignment; free on common hosts). */
#define DDTS_DEFAULT_PORT 7878

/* Net: a passphrase longer than this is a pasted file, not a passphrase. */
#define DDTS_MAX_PASSPHRASE_BYTES 1024
/* Net: relative paths of transferred files and client/job names. */
#define DDTS_MAX_PATH_BYTES 1024
#define DDTS_MAX_NAME_BYTES 64
/* Net: job settings JSON sent to clients (one frame). */
#define DDTS_MAX_SETTINGS_BYTES (1u << 20)
/* Net: one received file and a client's whole upload (models, logs, plots). */
#define DDTS_MAX_FILE_BYTES   (64ULL << 30)
#define DDTS_MAX_UPLOAD_FILES 10000
/* Net: a weight vector exchanged in a round: 2^31 float32 = 8 GiB. */
#define DDTS_MAX_SYNC_FLOATS (1ULL << 31)
/* Net: a PROGRESS report's counts, refused beyond the ranges a job can have
 * (src/job/job.c: epochs 1..10^6, folds 2..1000) and beyond 2^40 samples per
 * epoch (arrays are at most 64 GiB); rates and durations beyond 10^12 per
 * second and 10^9 s (31 years) are not measurements. */
#define DDTS_MAX_PROGRESS_EPOCHS  1000000u
#define DDTS_MAX_PROGRESS_FOLDS   1000u
#define DDTS_MAX_PROGRESS_SAMPLES (1ULL << 40)
#define DDTS_MAX_PROGRESS_RATE    1e12
#define DDTS_MAX_PROGRESS_SECONDS 1e9
/* Net: an EPOCH report (a finished epoch's history row, protocol 3) carries at
 * most this many figures (a model's logs: struct ddts_logs holds 16) whose
 * names are 1..this many bytes of [A-Za-z0-9._-] (Keras' longest built-in,
 * "val_sparse_top_k_categorical_accuracy", is 37). */
#define DDTS_MAX_EPOCH_FIGURES    16u
#define DDTS_MAX_EPOCH_NAME_BYTES 64u
/* Net: a client sends at most one PROGRESS per this many seconds, plus one at
 * each epoch end (the server's live view redraws at most 4 times a second). */
#define DDTS_PROGRESS_INTERVAL_S 0.5
/* Net: a client whose round (a --sync exchange) is not answered within this
 * many seconds says it waits for the other clients (the log stays quiet when
 * the round completes at once). */
#define DDTS_SYNC_WAIT_NOTE_S 2.0

/* Dashboard (src/dash/): connections served at once (every answer closes its
 * connection: 100 open pages polling every second hold far fewer), those from
 * one IP address (a flood from one address leaves half the slots to the
 * others), the seconds a new connection has to send its full request (silent
 * connections cannot hold the slots for long), the inactivity allowed once a
 * request came (a slow reader of a large file), and what it remembers of a
 * live job: event lines and rounds (the newest kept), and the epoch ends of
 * one client's share (10^4 epochs x 100 folds would exceed it; a page draws a
 * few thousand points at most). */
#define DDTS_DASH_MAX_CONNECTIONS   256u
#define DDTS_DASH_MAX_PER_IP        128u
#define DDTS_DASH_REQUEST_TIMEOUT_S 3u
#define DDTS_DASH_TIMEOUT_S         15u
#define DDTS_DASH_MAX_EVENTS        1000u
#define DDTS_DASH_MAX_ROUNDS        2000u
#define DDTS_DASH_MAX_POINTS        100000u
/* Dashboard: a URL path, a query value, and the default listen port. */
#define DDTS_DASH_MAX_URL_BYTES 1024u
#define DDTS_DASH_DEFAULT_PORT  7880

#endif
