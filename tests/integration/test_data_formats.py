#!/usr/bin/python3
"""Every data format ddts reads, against files written here by numpy, pandas,
openpyxl, gzip and zipfile with known contents: `ddts convert` output is
compared with numpy's view of the same data. Every error path gets a file
that triggers it and a check of the exit code and of the message.

Run by CTest with DDTS=path/to/ddts (Debian's /usr/bin/python3 with numpy;
pandas and openpyxl are used when installed: python3-pandas, python3-openpyxl).
"""
import gzip
import os
import struct
import subprocess
import sys
import tempfile
import zipfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import Checks  # noqa: E402

DDTS = os.environ.get("DDTS", "build/ddts")
WORK = tempfile.mkdtemp(prefix="ddts-test_data_formats-")

try:
    import pandas as pd
except ImportError:  # pragma: no cover
    pd = None
try:
    import openpyxl
except ImportError:  # pragma: no cover
    openpyxl = None


check = Checks()


def fail(msg):
    check(False, msg)


def ok():
    check(True, "")


def path(name):
    return os.path.join(WORK, name)


def run(*args, env=None):
    e = dict(os.environ)
    if env:
        e.update(env)
    p = subprocess.run([DDTS, *args], capture_output=True, text=True, env=e, timeout=120)
    return p.returncode, p.stdout, p.stderr


def convert_ok(src, want, *flags, what=None, env=None):
    """ddts convert src -> .npy equals `want` (values, shape and dtype)."""
    out = path("out.npy")
    if os.path.exists(out):
        os.unlink(out)
    rc, _, err = run("convert", src, out, *flags, env=env)
    what = what or os.path.basename(src)
    if rc != 0:
        return fail(f"{what}: convert exited {rc}: {err.strip()}")
    got = np.load(out)
    want = np.asarray(want)
    if got.shape != want.shape:
        return fail(f"{what}: shape {got.shape}, expected {want.shape}")
    if got.dtype != want.dtype:
        return fail(f"{what}: dtype {got.dtype}, expected {want.dtype}")
    if not np.array_equal(got, want, equal_nan=got.dtype.kind == "f"):
        return fail(f"{what}: values differ:\n got {got.ravel()[:8]}\nwant {want.ravel()[:8]}")
    ok()


def convert_fails(src, needle, *flags, rc_want=1, what=None):
    """ddts convert src fails with exit code rc_want and a message containing needle."""
    rc, _, err = run("convert", src, path("never.npy"), *flags)
    what = what or os.path.basename(src)
    if rc != rc_want:
        return fail(f"{what}: convert exited {rc}, expected {rc_want}; stderr: {err.strip()}")
    if needle not in err:
        return fail(f"{what}: message lacks {needle!r}: {err.strip()}")
    if os.path.exists(path("never.npy")):
        return fail(f"{what}: an output file was written despite the error")
    ok()


def write(name, data, mode="wb"):
    p = path(name)
    with open(p, mode) as f:
        f.write(data)
    return p


# --------------------------------------------------------------------------- npy

def test_npy():
    rng = np.random.default_rng(5)
    kinds = ["bool", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8"]
    for k in kinds:
        for order in "<>":
            dt = np.dtype(k).newbyteorder(order) if np.dtype(k).itemsize > 1 else np.dtype(k)
            if k == "bool":
                a = rng.integers(0, 2, size=(3, 4, 5)).astype(bool)
            elif k[0] == "f":
                a = rng.normal(size=(3, 4, 5)).astype(dt)
            else:
                info = np.iinfo(np.dtype(k))
                a = rng.integers(info.min, info.max, size=(3, 4, 5), endpoint=True, dtype=np.dtype(k))
                a = a.astype(dt)
            for fortran in (False, True):
                b = np.asfortranarray(a) if fortran else np.ascontiguousarray(a)
                p = path(f"a_{k}_{'be' if order == '>' else 'le'}_{'F' if fortran else 'C'}.npy")
                np.save(p, b)
                what = os.path.basename(p)
                convert_ok(p, a.astype(a.dtype.newbyteorder("=")), "--dtype", "keep", what=what + " keep")
                convert_ok(p, a.astype(np.float64), what=what + " float64")
    # Format versions 1.0, 2.0 and 3.0.
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    for v in [(1, 0), (2, 0), (3, 0)]:
        p = path(f"v{v[0]}.npy")
        with open(p, "wb") as f:
            np.lib.format.write_array(f, a, version=v)
        convert_ok(p, a, "--dtype", "float32", what=f"npy version {v}")
    # Ranks 0 and 1, an empty array, other output dtypes.
    np.save(path("r0.npy"), np.float64(3.5))
    convert_ok(path("r0.npy"), np.float64(3.5), what="rank 0")
    np.save(path("r1.npy"), np.arange(7, dtype=np.int16))
    convert_ok(path("r1.npy"), np.arange(7, dtype=np.float64), what="rank 1")
    np.save(path("empty.npy"), np.zeros((0, 3), np.float32))
    convert_ok(path("empty.npy"), np.zeros((0, 3), np.float64), what="empty")
    np.save(path("conv.npy"), np.array([-1.7, 0.2, 300.9, 1e10], np.float64))
    convert_ok(path("conv.npy"), np.array([-1, 0, 300, 2147483647], np.int32), "--dtype", "int32",
               what="float64 to int32 truncates and saturates")
    with np.errstate(over="ignore"):
        f16 = np.array([-1.7, 0.2, 300.9, 1e10]).astype(np.float16)
    convert_ok(path("conv.npy"), f16, "--dtype",
               "float16", what="float64 to float16 rounds to nearest even")

    # inspect: min, max, mean and std (population) as numpy computes them.
    a = np.random.default_rng(8).normal(3, 2, size=(50, 4)).astype(np.float32)
    np.save(path("stats.npy"), a)
    rc, out, err = run("inspect", path("stats.npy"))
    d = a.astype(np.float64)
    want = f"min {d.min():.6g}  max {d.max():.6g}  mean {d.mean():.6g}  std {d.std():.6g}"
    if rc != 0 or want not in out or "float32" not in out or "(50, 4)" not in out:
        fail(f"inspect stats.npy: {out!r} lacks {want!r}")
    else:
        ok()
    a[3, 1] = np.nan
    np.save(path("nan.npy"), a)
    rc, out, err = run("inspect", path("nan.npy"))
    if rc != 0 or "(1 NaN)" not in out or f"max {np.nanmax(d):.6g}" not in out:
        fail(f"inspect nan.npy: {out!r}")
    else:
        ok()

    # Errors.
    good = open(path("v1.npy"), "rb").read()
    convert_fails(write("trunc.npy", good[:-5]), "truncated data")
    convert_fails(write("trunc_head.npy", good[:30]), "truncated header")
    convert_fails(write("magic.npy", b"\x93NUMPX" + good[6:]), "bad magic")
    convert_fails(write("short.npy", b"\x93NUM"), "too short")
    np.save(path("complex.npy"), np.zeros(3, np.complex64))
    convert_fails(path("complex.npy"), "not supported")
    np.save(path("struct.npy"), np.zeros(3, dtype=[("a", "i4"), ("b", "f4")]))
    convert_fails(path("struct.npy"), "structured")
    np.save(path("obj.npy"), np.array([1, "a"], dtype=object), allow_pickle=True)
    convert_fails(path("obj.npy"), "not supported")
    np.save(path("str.npy"), np.array(["ab", "c"]))
    convert_fails(path("str.npy"), "not supported")

    def header_file(name, header, version=1, data=b""):
        h = header.encode("latin1")
        pad = (64 - (10 + len(h) + 1) % 64) % 64
        h = h + b" " * pad + b"\n"
        if version == 1:
            pre = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h))
        else:
            pre = b"\x93NUMPY" + bytes([version, 0]) + struct.pack("<I", len(h))
        return write(name, pre + h + data)

    convert_fails(header_file("absurd.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000, 1000000, 1000000), }"),
                  "exceeds")
    convert_fails(header_file("overflow.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999999999999999,), }"),
                  "malformed 'shape'")
    convert_fails(header_file("rank9.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }"),
                  "rank above")
    convert_fails(header_file("nokey.npy", "{'descr': '<f8', 'shape': (1,), }"), "lacks 'fortran_order'")
    convert_fails(header_file("badkey.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), 'x': 1}"),
                  "unknown header key")
    convert_fails(header_file("notdict.npy", "[1, 2]"), "not a dict")
    convert_fails(header_file("badorder.npy", "{'descr': '<f8', 'fortran_order': Maybe, 'shape': (1,), }"),
                  "fortran_order")
    convert_fails(header_file("lies.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (100,), }",
                              data=b"\0" * 16), "truncated data")
    big = b"\x93NUMPY\x02\x00" + struct.pack("<I", 1 << 20) + b" " * 100
    convert_fails(write("bighead.npy", big), "max 65536")
    convert_fails(write("v9.npy", b"\x93NUMPY\x09\x00" + b"\0" * 60), "format version 9")
    for ext in ["npy", "npz", "csv", "xlsx", "idx.gz"]:
        convert_fails(path("does-not-exist." + ext), "cannot open")


# --------------------------------------------------------------------------- npz

def test_npz():
    x = np.arange(60, dtype=np.uint8).reshape(5, 12)
    y = np.array([1, 0, 3, 2, 4], np.int64)
    np.savez(path("stored.npz"), x_train=x, y_train=y)
    np.savez_compressed(path("deflated.npz"), x_train=x, y_train=y)
    for name in ["stored.npz", "deflated.npz"]:
        convert_ok(path(name), x, "--key", "x_train", "--dtype", "keep", what=name + " x_train")
        convert_ok(path(name), y.astype(np.float64), "--key", "y_train", what=name + " y_train")
        convert_ok(path(name), y, "--key", "y_train.npy", "--dtype", "int64", what=name + " key.npy")
        convert_fails(path(name), "choose one with a key: x_train, y_train", what=name + " no key")
        convert_fails(path(name), "no array 'z'", "--key", "z", what=name + " missing key")
    np.savez(path("one.npz"), np.linspace(0, 1, 11))
    convert_ok(path("one.npz"), np.linspace(0, 1, 11), what="npz with one array, no key")
    # Big-endian Fortran-order member.
    np.savez(path("befo.npz"), a=np.asfortranarray(np.arange(6, dtype=">f4").reshape(2, 3)))
    convert_ok(path("befo.npz"), np.arange(6, dtype=np.float64).reshape(2, 3), what="npz big endian F")
    # zip64 members (np.savez writes them for members over 2 GiB; forced here).
    with zipfile.ZipFile(path("zip64.npz"), "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key, arr in [("a", x), ("b", y)]:
            with zf.open(key + ".npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, arr)
    convert_ok(path("zip64.npz"), y, "--key", "b", "--dtype", "keep", what="zip64")
    # Inspect lists every array.
    rc, out, err = run("inspect", path("stored.npz"))
    if rc != 0 or "x_train" not in out or "(5, 12)" not in out or "y_train" not in out or "max 4" not in out:
        fail(f"inspect stored.npz: rc {rc}: {out} {err}")
    else:
        ok()

    # Errors: not a zip, a truncated zip, a member that lies about its size,
    # a zip bomb (declared size far beyond what its compressed bytes can hold).
    convert_fails(write("notzip.npz", b"hello world, not a zip"), "not a valid zip")
    raw = open(path("deflated.npz"), "rb").read()
    convert_fails(write("trunc.npz", raw[: len(raw) // 2]), "not a valid zip", "--key", "x_train")

    def patch_sizes(data, member, new_size):
        """Rewrites the uncompressed size of `member` in its local and central headers."""
        b = bytearray(data)
        name = member.encode()
        i = 0
        while True:
            i = b.find(b"PK\x03\x04", i)
            if i < 0:
                break
            n = struct.unpack_from("<H", b, i + 26)[0]
            if b[i + 30 : i + 30 + n] == name:
                struct.pack_into("<I", b, i + 22, new_size)
            i += 4
        i = 0
        while True:
            i = b.find(b"PK\x01\x02", i)
            if i < 0:
                break
            n = struct.unpack_from("<H", b, i + 28)[0]
            if b[i + 46 : i + 46 + n] == name:
                struct.pack_into("<I", b, i + 24, new_size)
            i += 4
        return bytes(b)

    np.savez_compressed(path("zeros.npz"), a=np.zeros(1000, np.float64))
    zraw = open(path("zeros.npz"), "rb").read()
    convert_fails(write("bomb.npz", patch_sizes(zraw, "a.npy", 0xFFFFFF00)), "zip bomb")
    convert_fails(write("lie_small.npz", patch_sizes(zraw, "a.npy", 200)), "truncated data")
    sraw = open(path("one.npz"), "rb").read()
    convert_fails(write("lie_big.npz", patch_sizes(sraw, "arr_0.npy", 100000)), "member 'arr_0.npy'")
    # A corrupt deflate stream (CRC or inflate error).
    b = bytearray(raw)
    j = b.find(b"x_train.npy") + len("x_train.npy") + 20
    b[j] ^= 0xFF
    b[j + 1] ^= 0xFF
    convert_fails(write("corrupt.npz", bytes(b)), "x_train", "--key", "x_train")
    # Stored members are read at their offset and checksummed by ddts itself:
    # a flipped data byte is a CRC error; zip64 records and an archive
    # comment (the end record is searched for) still work.
    big = np.arange(3000, dtype=np.float32).reshape(100, 30)
    np.savez(path("stored_big.npz"), a=big, b=y)
    b = bytearray(open(path("stored_big.npz"), "rb").read())
    j = b.find(b"a.npy") + len("a.npy") + 200
    b[j] ^= 0x01
    convert_fails(write("stored_crc.npz", bytes(b)), "CRC error", "--key", "a", what="stored CRC")
    with zipfile.ZipFile(path("stored64.npz"), "w", compression=zipfile.ZIP_STORED) as zf:
        for key, arr in [("a", big), ("b", y)]:
            with zf.open(key + ".npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, arr)
        zf.comment = b"an archive comment"
    convert_ok(path("stored64.npz"), big, "--key", "a", "--dtype", "keep", what="stored zip64 + comment")
    convert_ok(path("stored64.npz"), y, "--key", "b", "--dtype", "keep", what="stored zip64 second")
    # 65536 members: Python writes the zip64 end of central directory record
    # from 0xFFFF entries on, and the central directory is searched past them.
    with zipfile.ZipFile(path("many.npz"), "w", compression=zipfile.ZIP_STORED) as zf:
        for i in range(65535):
            zf.writestr("p%d.txt" % i, b"")
        with zf.open("a.npy", "w") as f:
            np.lib.format.write_array(f, big)
    with open(path("many.npz"), "rb") as f:
        assert b"PK\x06\x06" in f.read()[-200:], "no zip64 end record written"
    convert_ok(path("many.npz"), big, "--key", "a", "--dtype", "keep", what="zip64 end record")


# --------------------------------------------------------------------------- csv

def test_csv():
    a = np.array([[1.5, -2.0, 3e-5], [4.0, 5.25, -6e10], [0.1, 0.2, 0.3]])
    header = "alpha,beta,gamma\n"
    body = "".join(",".join(repr(v) for v in row) + "\n" for row in a)
    convert_ok(write("h.csv", header + body, "w"), a, what="csv with header")
    convert_ok(write("noh.csv", body, "w"), a, what="csv without header")
    for d, name in [(";", "semi"), ("\t", "tab"), ("|", "pipe")]:
        text = (header + body).replace(",", d)
        convert_ok(write(f"{name}.csv", text, "w"), a, what=f"csv delimiter {name}")
    crlf = (header + body).replace("\n", "\r\n")
    convert_ok(write("crlf.csv", crlf.encode()), a, what="csv CRLF")
    convert_ok(write("bom.csv", b"\xef\xbb\xbf" + crlf.encode()), a, what="csv BOM + CRLF")
    convert_ok(write("noeol.csv", (header + body).rstrip("\n"), "w"), a, what="csv without a final newline")
    quoted = '"x, with comma","y ""quoted""","z\nmultiline"\n"1",2," 3 "\n\n4,"5",6\n'
    convert_ok(write("quoted.csv", quoted, "w"), np.array([[1.0, 2, 3], [4, 5, 6]]), what="csv RFC 4180 quoting")
    convert_ok(write("single.csv", "value\n1\n2\n3\n", "w"), np.array([[1.0], [2], [3]]), what="csv one column")
    convert_ok(write("spaces.csv", "a, b\n 1 , 2\n3,4 \n", "w"), np.array([[1.0, 2], [3, 4]]), what="csv spaces")
    convert_ok(write("special.csv", "a,b\nnan,inf\n-inf,1e308\n", "w"),
               np.array([[np.nan, np.inf], [-np.inf, 1e308]]), what="csv nan/inf")
    # Exactly rounded parsing: the fast path and the strtod_l path agree with Python.
    vals = ["0.1", "0.30000000000000004", "1.7976931348623157e308", "4.9e-324", "123456789012345678901234",
            "2.2250738585072014e-308", "9007199254740993", "1e23", "8.98846567431158e307", "-0.0", "0.000001234"]
    convert_ok(write("round.csv", "\n".join(vals) + "\n", "w"), np.array([[float(v)] for v in vals]),
               what="csv correct rounding")
    # Against pandas on a larger random file.
    if pd is not None:
        rng = np.random.default_rng(1)
        df = pd.DataFrame(rng.normal(size=(500, 7)) * 10.0 ** rng.integers(-5, 5, size=(500, 7)),
                          columns=[f"c{i}" for i in range(7)])
        df.to_csv(path("pandas.csv"), index=False)
        convert_ok(path("pandas.csv"), pd.read_csv(path("pandas.csv"), float_precision="round_trip").to_numpy(),
                   what="csv written by pandas")
        df.to_csv(path("pandas_semi.csv"), index=False, sep=";", lineterminator="\r\n")
        convert_ok(path("pandas_semi.csv"), df.to_numpy(), what="csv written by pandas (; CRLF)")

    # Errors naming file, row and column.
    convert_fails(write("missing.csv", "a,b,c\n1,2,3\n4,,6\n", "w"), "missing.csv: row 3 (line 3), column 2 ('b'): empty cell")
    convert_fails(write("text.csv", "a,b,c\n1,2,3\n4,5,six\n", "w"), "row 3 (line 3), column 3 ('c'): 'six' is not a number")
    convert_fails(write("ragged.csv", "a,b,c\n1,2,3\n4,5\n", "w"), "row 3 (line 3) has 2 columns, row 1 has 3")
    convert_fails(write("unterminated.csv", 'a,b\n1,"2\n', "w"), "malformed quoted field")
    convert_fails(write("stray.csv", 'a,b\n1,2"x"\n', "w"), "malformed quoted field")
    convert_fails(write("empty.csv", "", "w"), "no data rows")
    convert_fails(write("header_only.csv", "a,b\n", "w"), "no data rows")
    convert_fails(write("comma_decimal.csv", "a;b\n1,5;2\n", "w"), "'1,5' is not a number")
    convert_fails(write("x.csv", "1,2\n", "w"), "key", "--key", "k")


# --------------------------------------------------------------------------- xlsx

CT = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
      '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
      '<Default Extension="xml" ContentType="application/xml"/></Types>')


def xlsx(name, sheets, shared=None, doctype=False):
    """A hand-made workbook: sheets is a list of (name, sheetData XML)."""
    p = path(name)
    with zipfile.ZipFile(p, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", CT)
        wb = ('<?xml version="1.0"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
              'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets>')
        rels = '<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        for i, (sname, _) in enumerate(sheets):
            wb += f'<sheet name="{sname}" sheetId="{i + 1}" r:id="rId{i + 7}"/>'
            rels += (f'<Relationship Id="rId{i + 7}" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
                     f'relationships/worksheet" Target="worksheets/s{i}.xml"/>')
        if shared is not None:
            rels += ('<Relationship Id="rId99" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
                     'relationships/sharedStrings" Target="strings.xml"/>')
        z.writestr("xl/workbook.xml", wb + "</sheets></workbook>")
        z.writestr("xl/_rels/workbook.xml.rels", rels + "</Relationships>")
        for i, (_, data) in enumerate(sheets):
            dt = '<!DOCTYPE x [<!ENTITY a "aaaa">]>' if doctype else ""
            z.writestr(f"xl/worksheets/s{i}.xml",
                       f'<?xml version="1.0"?>{dt}<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
                       f"<dimension ref=\"A1\"/><sheetData>{data}</sheetData></worksheet>")
        if shared is not None:
            sst = '<?xml version="1.0"?><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
            for s in shared:
                sst += s if s.startswith("<si>") else f"<si><t>{s}</t></si>"
            z.writestr("xl/strings.xml", sst + "</sst>")
    return p


def test_xlsx():
    if openpyxl is not None:
        wb = openpyxl.Workbook()
        ws = wb.active
        ws.title = "Data"
        ws.append(["x1", "x2", "flag"])
        rows = [[1, 2.5, True], [-3, 1e-7, False], [4.25, 1e20, True]]
        for r in rows:
            ws.append(r)
        ws2 = wb.create_sheet("Other")
        ws2["C3"] = 7
        ws2["D3"] = 8
        ws2["C4"] = 9
        ws2["D4"] = 10
        wb.save(path("openpyxl.xlsx"))
        want = np.array([[float(v) for v in r] for r in rows])
        convert_ok(path("openpyxl.xlsx"), want, what="xlsx by openpyxl, first sheet")
        convert_ok(path("openpyxl.xlsx"), want, "--key", "Data", what="xlsx sheet by name")
        convert_ok(path("openpyxl.xlsx"), np.array([[7.0, 8], [9, 10]]), "--key", "Other",
                   what="xlsx sheet starting at C3")
        convert_fails(path("openpyxl.xlsx"), "no sheet 'Nope' (sheets: 'Data', 'Other')", "--key", "Nope")
        rc, out, err = run("inspect", path("openpyxl.xlsx"))
        if rc != 0 or "Data" not in out or "Other" not in out or "(3, 3)" not in out:
            fail(f"inspect openpyxl.xlsx: rc {rc}: {out} {err}")
        else:
            ok()
        wb = openpyxl.Workbook()
        wb.active.append([1, "=A1*2"])
        wb.save(path("formula_nocache.xlsx"))
        convert_fails(path("formula_nocache.xlsx"), "row 1, column 2 (cell B1): a formula without a cached value")
        if pd is not None:
            df = pd.DataFrame(np.arange(12.0).reshape(4, 3) / 7, columns=["a", "b", "c"])
            df.to_excel(path("pandas.xlsx"), index=False, sheet_name="S")
            # openpyxl writes 16 significant digits: compare with pandas' reading of the same file.
            convert_ok(path("pandas.xlsx"), pd.read_excel(path("pandas.xlsx")).to_numpy(dtype=np.float64),
                       what="xlsx by pandas, as pandas reads it")

    # Hand-made: shared strings (plain and rich runs with phonetic text) as
    # header, inline strings, numbers, booleans, cached formula values, cells
    # without r attributes, leading empty column.
    shared = ["<si><r><t>al</t></r><r><t>pha</t></r><rPh><t>PH</t></rPh></si>", "beta", "gamma"]
    data = ('<row r="1"><c r="B1" t="s"><v>0</v></c><c r="C1" t="s"><v>1</v></c><c r="D1" t="inlineStr"><is><t>d</t></is></c></row>'
            '<row r="2"><c r="B2"><v>1.5</v></c><c r="C2" t="b"><v>1</v></c><c r="D2"><f>B2*2</f><v>3</v></c></row>'
            '<row r="3"><c r="B3" t="n" s="1"><v>-2E-3</v></c><c><v>7</v></c><c t="b"><v>0</v></c></row>'
            '<row r="4" spans="2:4"><c r="B4" s="3"><v>4</v></c><c r="C4"><v>5</v></c><c r="D4"><v>6</v></c></row>'
            '<row r="9"/>')
    convert_ok(xlsx("hand.xlsx", [("S1", data)], shared), np.array([[1.5, 1, 3], [-2e-3, 7, 0], [4, 5, 6]]),
               what="xlsx shared/inline strings, booleans, cached formulas, sparse refs")
    rc, out, err = run("inspect", path("hand.xlsx"))
    if rc != 0 or "S1" not in out:
        fail(f"inspect hand.xlsx: {rc} {out} {err}")
    else:
        ok()
    nohdr = '<row r="1"><c r="A1"><v>1</v></c><c r="B1"><v>2</v></c></row><row r="2"><c r="A2"><v>3</v></c><c r="B2"><v>4</v></c></row>'
    convert_ok(xlsx("nohdr.xlsx", [("A", "<row/>"), ("B", nohdr)]), np.array([[1.0, 2], [3, 4]]), "--key", "B",
               what="xlsx without header, second sheet")
    # Errors naming the cell.
    gap = '<row r="1"><c r="A1"><v>1</v></c><c r="B1"><v>2</v></c></row><row r="2"><c r="B2"><v>4</v></c></row>'
    convert_fails(xlsx("gap.xlsx", [("S", gap)]), "row 2, column 1 (cell A2): empty cell")
    gap_end = '<row r="1"><c r="A1"><v>1</v></c><c r="B1"><v>2</v></c></row><row r="2"><c r="A2"><v>4</v></c></row>'
    convert_fails(xlsx("gap_end.xlsx", [("S", gap_end)]), "row 2, column 2 (cell B2): empty cell")
    gap_row = ('<row r="1"><c r="A1"><v>1</v></c></row><row r="3"><c r="A3"><v>4</v></c></row>')
    convert_fails(xlsx("gap_row.xlsx", [("S", gap_row)]), "row 2, column 1 (cell A2): empty cell")
    text = '<row r="1"><c r="A1"><v>1</v></c></row><row r="2"><c r="A2" t="inlineStr"><is><t>oops</t></is></c></row>'
    convert_fails(xlsx("text.xlsx", [("S", text)]), "row 2, column 1 (cell A2): text 'oops' is not a number")
    errc = '<row r="1"><c r="A1" t="e"><v>#DIV/0!</v></c></row>'
    convert_fails(xlsx("errcell.xlsx", [("S", errc)]), "row 1, column 1 (cell A1) holds the error #DIV/0!")
    convert_fails(xlsx("badss.xlsx", [("S", '<row r="1"><c r="A1" t="s"><v>5</v></c></row>')], ["a"]),
                  "shared string 5 out of range")
    convert_fails(xlsx("badref.xlsx", [("S", '<row r="1"><c r="1A"><v>5</v></c></row>')]), "bad cell reference")
    convert_fails(xlsx("order.xlsx", [("S", '<row r="2"/><row r="1"/>')]), "row 1 after row 2")
    convert_fails(xlsx("doctype.xlsx", [("S", '<row r="1"><c r="A1"><v>5</v></c></row>')], doctype=True),
                  "DOCTYPE is not allowed")
    convert_fails(xlsx("empty.xlsx", [("S", "")]), "has no data rows")
    convert_fails(xlsx("broken.xlsx", [("S", "<row><c>")]), "XML error")
    convert_fails(write("notzip.xlsx", b"PK\x03\x04 nothing"), "not a valid zip")
    with zipfile.ZipFile(path("nowb.xlsx"), "w") as z:
        z.writestr("hello.txt", "hi")
    convert_fails(path("nowb.xlsx"), "not an xlsx workbook")


# --------------------------------------------------------------------------- idx

def idx_bytes(a):
    codes = {np.dtype("u1"): 8, np.dtype("i1"): 9, np.dtype("i2"): 11, np.dtype("i4"): 12,
             np.dtype("f4"): 13, np.dtype("f8"): 14}
    head = bytes([0, 0, codes[a.dtype], a.ndim]) + b"".join(struct.pack(">I", d) for d in a.shape)
    return head + a.astype(a.dtype.newbyteorder(">")).tobytes()


def test_idx():
    rng = np.random.default_rng(3)
    for dt in ["u1", "i1", "i2", "i4", "f4", "f8"]:
        a = (rng.normal(size=(4, 3, 2)) * 100).astype(dt)
        raw = idx_bytes(a)
        convert_ok(write(f"a_{dt}.idx", raw), a, "--dtype", "keep", what=f"idx {dt}")
        convert_ok(write(f"a_{dt}.idx.gz", gzip.compress(raw)), a, "--dtype", "keep", what=f"idx.gz {dt}")
    # MNIST file names and the real Fashion-MNIST from Debian's package.
    a = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    convert_ok(write("train-images-idx3-ubyte.gz", gzip.compress(idx_bytes(a))), a, "--dtype", "uint8",
               what="MNIST-named idx3 gz")
    convert_ok(write("t10k-labels-idx1-ubyte", idx_bytes(a[:, 0, 0].copy())), a[:, 0, 0], "--dtype", "uint8",
               what="MNIST-named idx1")
    deb = "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz"
    if os.path.exists(deb):
        raw = gzip.open(deb).read()
        want = np.frombuffer(raw[8:], np.uint8)
        convert_ok(deb, want, "--dtype", "uint8", what="Debian Fashion-MNIST test labels")
    # Errors.
    raw = idx_bytes(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))
    convert_fails(write("trunc.idx", raw[:-3]), "truncated")
    convert_fails(write("extra.idx", raw + b"\0\0"), "bytes after the data")
    convert_fails(write("magic.idx", b"\1" + raw[1:]), "bad magic")
    convert_fails(write("type.idx", raw[:2] + b"\x0a" + raw[3:]), "unknown type code 0x0a")
    convert_fails(write("rank0.idx", b"\0\0\x08\0"), "rank 0")
    convert_fails(write("rank200.idx", b"\0\0\x08\xc8" + b"\0" * 800), "rank 200")
    convert_fails(write("absurd.idx", b"\0\0\x08\x03" + struct.pack(">III", 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF)),
                  "exceeds")
    convert_fails(write("trunc.idx.gz", gzip.compress(raw)[:-12]), "idx")
    # A gzip whose header promises far more than its stream holds: refused before allocating.
    lie = bytes([0, 0, 8, 3]) + struct.pack(">III", 60000, 280, 280) + b"\0" * 100
    convert_fails(write("lie.idx.gz", gzip.compress(lie)), "the gzip trailer says")
    g = bytearray(gzip.compress(raw))
    g[20] ^= 0x55
    convert_fails(write("corrupt.idx.gz", bytes(g)), "idx")
    convert_fails(write("unknown.dat", b"1,2\n"), "unknown data format")


# --------------------------------------------------------------------------- Keras datasets

def test_keras():
    home = path("kh")
    os.makedirs(os.path.join(home, "datasets", "fashion-mnist"))
    rng = np.random.default_rng(9)
    xs = {k: rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8) for k, n in [("x_train", 6), ("x_test", 3)]}
    ys = {k: rng.integers(0, 10, size=n, dtype=np.uint8) for k, n in [("y_train", 6), ("y_test", 3)]}
    np.savez_compressed(os.path.join(home, "datasets", "mnist.npz"), **xs, **ys)
    fm = os.path.join(home, "datasets", "fashion-mnist")
    for split, pre in [("train", "train"), ("test", "t10k")]:
        with open(os.path.join(fm, f"{pre}-images-idx3-ubyte.gz"), "wb") as f:
            f.write(gzip.compress(idx_bytes(xs["x_" + split][::-1].copy())))
        with open(os.path.join(fm, f"{pre}-labels-idx1-ubyte.gz"), "wb") as f:
            f.write(gzip.compress(idx_bytes(ys["y_" + split][::-1].copy())))
    env = {"KERAS_HOME": home}
    for k, v in {**xs, **ys}.items():
        convert_ok("keras:mnist", v, "--key", k, "--dtype", "uint8", what=f"keras mnist.npz {k}", env=env)
        convert_ok("keras:fashion_mnist", v[::-1], "--key", k, "--dtype", "uint8",
                   what=f"keras fashion-mnist cache {k}", env=env)
    rc, out, err = run("inspect", "keras:mnist", env=env)
    if rc != 0 or "(6, 28, 28)" not in out or "y_test" not in out:
        fail(f"inspect keras:mnist: {rc} {out} {err}")
    else:
        ok()
    # Without a cache: mnist is not found (naming where it looked); fashion_mnist
    # falls back to Debian's copy when installed.
    empty = {"KERAS_HOME": path("nowhere"), "HOME": path("nowhere"), "DDTS_OFFLINE": "1"}
    rc, _, err = run("convert", "keras:mnist", path("never.npy"), env=empty)
    if rc != 1 or "not found (searched" not in err or "nowhere/datasets/mnist.npz" not in err or \
            "downloads are off" not in err:
        fail(f"keras:mnist without cache: {rc} {err}")
    else:
        ok()
    if os.path.exists("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz"):
        want = np.frombuffer(gzip.open("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz").read()[8:], np.uint8)
        convert_ok("keras:fashion_mnist", want, "--key", "y_test", "--dtype", "uint8", env=empty,
                   what="keras fashion_mnist from Debian's dataset-fashion-mnist")
    # The other Keras datasets (test_keras_datasets.py reads them): offline and
    # absent, the message names where they were looked for.
    for name in ("cifar10", "cifar100", "imdb", "reuters", "boston_housing"):
        rc, _, err = run("convert", f"keras:{name}", path("never.npy"), env=empty)
        if rc != 1 or f"Keras dataset '{name}' not found in" not in err or \
                "nowhere/datasets" not in err or "DDTS_OFFLINE" not in err:
            fail(f"keras:{name} without cache: {rc} {err}")
        else:
            ok()
    convert_fails("keras:nosuch", "unknown Keras dataset", what="keras:nosuch")
    convert_fails("keras:mnist", "expected x_train", "--key", "z_train", what="keras bad key")


def test_download():
    """Missing Keras datasets come from Keras' address: here a loopback HTTP server."""
    import functools
    import http.server
    import threading

    served = path("origin")
    os.makedirs(served)
    rng = np.random.default_rng(4)
    want = {}
    for pre, n in [("train", 5), ("t10k", 2)]:
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, size=n, dtype=np.uint8)
        want[pre] = (x, y)
        with open(os.path.join(served, f"{pre}-images-idx3-ubyte.gz"), "wb") as f:
            f.write(gzip.compress(idx_bytes(x)))
        with open(os.path.join(served, f"{pre}-labels-idx1-ubyte.gz"), "wb") as f:
            f.write(gzip.compress(idx_bytes(y)))
    np.savez(os.path.join(served, "mnist.npz"), x_train=np.zeros((1, 28, 28), np.uint8))

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=served))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    origin = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        home = path("dl_home")
        env = {"KERAS_HOME": home, "HOME": path("nowhere"), "DDTS_SYSTEM_DATASETS": path("nosys"),
               "DDTS_KERAS_ORIGIN": origin}
        convert_ok("keras:fashion_mnist", want["t10k"][1], "--key", "y_test", "--dtype", "uint8", env=env,
                   what="fashion_mnist downloaded from the loopback origin")
        cached = os.path.join(home, "datasets", "fashion-mnist", "t10k-labels-idx1-ubyte.gz")
        if not os.path.exists(cached):
            fail("the downloaded file is not in the Keras cache")
        else:
            ok()
        # Now from the cache, even with the origin gone.
        env2 = dict(env, DDTS_KERAS_ORIGIN="http://127.0.0.1:1/")
        convert_ok("keras:fashion_mnist", want["t10k"][1], "--key", "y_test", "--dtype", "uint8", env=env2,
                   what="fashion_mnist from the cache after download")
        convert_ok("keras:fashion_mnist", want["train"][0], "--key", "x_train", "--dtype", "uint8", env=env,
                   what="fashion_mnist x_train downloaded")
        # mnist.npz must match Keras' SHA-256: the served file does not, and is discarded.
        rc, _, err = run("convert", "keras:mnist", path("never.npy"), env=env)
        if rc != 1 or "SHA-256" not in err or "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1" not in err:
            fail(f"mnist checksum mismatch: rc {rc}: {err}")
        elif os.path.exists(os.path.join(home, "datasets", "mnist.npz")) or \
                any(".tmp." in f for f in os.listdir(os.path.join(home, "datasets"))):
            fail("a file was left behind after a checksum mismatch")
        else:
            ok()
        # A missing file on the server: the HTTP error is named.
        env3 = dict(env, KERAS_HOME=path("dl_home3"), DDTS_KERAS_ORIGIN=origin + "nothing/")
        rc, _, err = run("convert", "keras:fashion_mnist", path("never.npy"), env=env3)
        if rc != 1 or "404" not in err or "not downloaded" not in err:
            fail(f"404: rc {rc}: {err}")
        else:
            ok()
    finally:
        server.shutdown()


def test_usage():
    for args, needle in [(["convert"], "expected IN and OUT.npy"), (["convert", "a", "b", "c"], "unexpected argument"),
                         (["convert", "a.npy", "b.npy", "--dtype", "complex"], "unknown dtype"),
                         (["convert", "a.npy", "b.npy", "--bogus"], "unknown"),
                         (["convert", "a.npy", "b.csv"], "OUT must be a .npy file name")]:
        rc, _, err = run(*args)
        if rc != 2 or needle not in err:
            fail(f"{args}: rc {rc}, stderr {err!r}")
        else:
            ok()
    rc, out, _ = run("convert", "--help")
    if rc != 0 or "--key" not in out or "--dtype" not in out:
        fail("convert --help")
    else:
        ok()


def main():
    for t in [test_npy, test_npz, test_csv, test_xlsx, test_idx, test_keras, test_download, test_usage]:
        t()
    return 0 if check.finish("test_data_formats", WORK) else 1


if __name__ == "__main__":
    sys.exit(main())
