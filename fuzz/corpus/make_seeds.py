#!/usr/bin/python3
"""Writes the small seed corpora of the data fuzz targets (run from the repo root:
/usr/bin/python3 fuzz/corpus/make_seeds.py). Each seed is a few hundred bytes."""
import gzip
import io
import os
import struct
import zipfile

import numpy as np

ROOT = os.path.dirname(os.path.abspath(__file__))


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def npy(a, version=None):
    b = io.BytesIO()
    if version:
        np.lib.format.write_array(b, a, version=version)
    else:
        np.save(b, a)
    return b.getvalue()


put("fuzz_npy", "f4_2x3", npy(np.arange(6, dtype="<f4").reshape(2, 3)))
put("fuzz_npy", "i2_be_fortran", npy(np.asfortranarray(np.arange(6, dtype=">i2").reshape(2, 3))))
put("fuzz_npy", "bool_1d", npy(np.array([True, False, True])))
put("fuzz_npy", "u1_v2", npy(np.arange(4, dtype="u1"), version=(2, 0)))
put("fuzz_npy", "f8_scalar_v3", npy(np.float64(1.5), version=(3, 0)))
put("fuzz_npy", "f2_3d", npy(np.ones((2, 1, 2), "<f2")))

for name, comp in [("stored", zipfile.ZIP_STORED), ("deflated", zipfile.ZIP_DEFLATED)]:
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", compression=comp) as z:
        z.writestr("x_train.npy", npy(np.arange(8, dtype="u1").reshape(2, 4)))
        z.writestr("y_train.npy", npy(np.array([1, 0], "<i8")))
    put("fuzz_zip", name, b.getvalue())
b = io.BytesIO()
with zipfile.ZipFile(b, "w", compression=zipfile.ZIP_DEFLATED) as z:
    with z.open("x_train.npy", "w", force_zip64=True) as f:
        f.write(npy(np.arange(3, dtype="<f4")))
put("fuzz_zip", "zip64", b.getvalue())

for name, text in [
    ("header", "a,b,c\n1,2.5,-3e2\n4,5,6\n"),
    ("semicolon_crlf_bom", "\ufeffx;y\r\n1;2\r\n3;4\r\n"),
    ("quoted", '"a ""q""","b\nc"\n"1",2\n'),
    ("tabs", "1\t2\n3\t4\n"),
    ("special", "a\nnan\ninf\n-0\n1.7976931348623157e308\n4.9e-324\n"),
    ("error", "a,b\n1,\n"),
]:
    put("fuzz_csv", name, text.encode("utf-8"))

sheet = ('<worksheet><sheetData><row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="inlineStr"><is><t>h</t></is></c></row>'
         '<row r="2"><c r="A2"><v>1.5</v></c><c r="B2" t="b"><v>1</v></c></row>'
         '<row r="3"><c r="A3"><f>A2*2</f><v>3</v></c><c><v>-2E-3</v></c></row></sheetData></worksheet>')
put("fuzz_xlsx", "sheet_xml", sheet.encode())
put("fuzz_xlsx", "sheet_sparse", b'<worksheet><sheetData><row r="2"><c r="C2"><v>1</v></c></row><row r="3"><c r="C3" t="e"><v>#N/A</v></c></row></sheetData></worksheet>')
b = io.BytesIO()
with zipfile.ZipFile(b, "w", compression=zipfile.ZIP_DEFLATED) as z:
    z.writestr("xl/workbook.xml", '<workbook xmlns:r="r"><sheets><sheet name="S" sheetId="1" r:id="rId1"/></sheets></workbook>')
    z.writestr("xl/_rels/workbook.xml.rels", '<Relationships><Relationship Id="rId1" Target="worksheets/sheet1.xml"/></Relationships>')
    z.writestr("xl/sharedStrings.xml", "<sst><si><t>a</t></si></sst>")
    z.writestr("xl/worksheets/sheet1.xml", sheet)
put("fuzz_xlsx", "workbook", b.getvalue())


def idx(a):
    codes = {"u1": 8, "i1": 9, "i2": 11, "i4": 12, "f4": 13, "f8": 14}
    head = bytes([0, 0, codes[a.dtype.str[1:]], a.ndim]) + b"".join(struct.pack(">I", d) for d in a.shape)
    return head + a.astype(a.dtype.newbyteorder(">")).tobytes()


put("fuzz_idx", "u1_3d", idx(np.arange(12, dtype="u1").reshape(2, 2, 3)))
put("fuzz_idx", "i2_1d", idx(np.array([1, -2, 300], "i2")))
put("fuzz_idx", "f8_2d", idx(np.ones((2, 2), "f8")))
put("fuzz_idx", "u1_gz", gzip.compress(idx(np.arange(30, dtype="u1").reshape(3, 10)), mtime=0))
put("fuzz_idx", "f4_gz", gzip.compress(idx(np.arange(4, dtype="f4")), mtime=0))

# fuzz_pickle: what the restricted unpickler reads (src/io/pickle.c): numpy's
# object array of lists (imdb.npz), a CIFAR batch at protocol 2 from Python 3
# (bytes through _codecs.encode) and from Python 2 (SHORT_BINSTRING), and a
# protocol 4 dict (FRAME, MEMOIZE, STACK_GLOBAL would be refused, SHORT_BINUNICODE).
import pickle  # noqa: E402


objs = np.empty(3, dtype=object)
objs[0], objs[1], objs[2] = [1, 2, 300], [70000, 5], [2 ** 40]
put("fuzz_pickle", "object_array", pickle.dumps(objs, protocol=3))
put("fuzz_pickle", "cifar_p2", pickle.dumps(
    {b"data": np.arange(12, dtype=np.uint8).reshape(2, 6), b"labels": [1, 2],
     b"batch_label": b"training batch 1 of 5"}, protocol=2))
put("fuzz_pickle", "dict_p4", pickle.dumps({"x": [1.5, None, True, (1, 2, 3)], "y": b"\x00" * 3},
                                           protocol=4))


def py2_str(b):
    return (b"U" + bytes([len(b)]) + b) if len(b) < 256 else (b"T" + struct.pack("<I", len(b)) + b)


py2 = b"\x80\x02}q\x00(" + py2_str(b"data")
py2 += b"cnumpy.core.multiarray\n_reconstruct\nq\x01cnumpy\nndarray\nq\x02K\x00\x85U\x01b\x87R"
py2 += b"(K\x01K\x02K\x03\x86cnumpy\ndtype\nU\x02u1K\x00K\x01\x87R"
py2 += b"(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89" + py2_str(bytes(range(6)))
py2 += b"tb" + py2_str(b"labels") + b"](K\x03K\x01eu."
put("fuzz_pickle", "cifar_py2", py2)
# A list that holds itself (through the memo), twice: consumers must not recurse.
put("fuzz_pickle", "self_reference", b"\x80\x03]q\x00h\x00ah\x00ah\x00ah\x00a.")


# fuzz_keras_h5_result: what the isolated HDF5 reader's child leaves in its result file
# (src/io/keras_h5_isolated.c put_model): weight values first, then the model's description,
# which refers to them by offset. The seed is u64 meta (where the description starts), then
# the result.
def h5r_u64(v):
    return struct.pack("<Q", v)


def h5r_str(s):
    if s is None:
        return h5r_u64(0)
    b = s.encode()
    return h5r_u64(len(b) + 1) + b


def h5r_weight(name, layer, shape, at):
    count = int(np.prod(shape))
    out = h5r_str(name) + h5r_str(name.split("/")[-1]) + h5r_str(layer)
    out += h5r_str("/model_weights/" + name) + h5r_u64(len(shape))
    out += b"".join(h5r_u64(d) for d in shape) + h5r_u64(count) + h5r_u64(0)
    return out + (h5r_u64(1) + h5r_u64(at) if at is not None else h5r_u64(0))


def h5r_result():
    values = np.arange(6, dtype="<f4").tobytes() + b"\0" * 8 + np.ones(3, "<f4").tobytes()
    meta = h5r_str("2.13.1") + h5r_str("tensorflow") + h5r_str('{"class_name": "Sequential"}')
    meta += h5r_str(None) + h5r_u64(1) + h5r_str("dense") + h5r_str("Dense") + h5r_u64(2)
    meta += h5r_weight("dense/kernel:0", "dense", (2, 3), 0)
    meta += h5r_weight("dense/bias:0", "dense", (3,), 32)
    meta += h5r_u64(1) + h5r_u64(1) + h5r_weight("iter:0", "", (), None)
    return h5r_u64(len(values)) + values + meta


put("fuzz_keras_h5_result", "dense", h5r_result())


# ---- fuzz_wire_epoch: EPOCH payloads (u32 fold, n_folds, epoch, epochs, u16 n, n x (str, f64)) ----
def epoch_row(fold, n_folds, epoch, epochs, figs):
    b = struct.pack("<IIIIH", fold, n_folds, epoch, epochs, len(figs))
    for name, v in figs:
        b += struct.pack("<I", len(name)) + name + struct.pack("<d", v)
    return b


put("fuzz_wire_epoch", "train_val", epoch_row(0, 0, 3, 6, [(b"loss", 0.51), (b"accuracy", 0.75),
                                                           (b"val_loss", 0.61),
                                                           (b"val_accuracy", 0.69)]))
put("fuzz_wire_epoch", "kfold_nan", epoch_row(2, 5, 1, 2, [(b"loss", float("nan")),
                                                           (b"val_mae", float("inf"))]))
put("fuzz_wire_epoch", "empty", epoch_row(0, 0, 1, 1, []))
put("fuzz_wire_epoch", "long_name", epoch_row(0, 0, 1, 1, [
    (b"val_sparse_top_k_categorical_accuracy", 0.5), (b"a" * 64, 1.0)]))
put("fuzz_wire_epoch", "dup", epoch_row(0, 0, 1, 1, [(b"loss", 1.0), (b"loss", 2.0)]))
put("fuzz_wire_epoch", "bad_char", epoch_row(0, 0, 1, 1, [(b"val/loss", 1.0)]))
