/*
 * libFuzzer target: xlsx workbooks (ddts_xlsx_parse). The input is used two
 * ways: as a whole .xlsx file (zip container), and as the XML of one sheet
 * wrapped into a fixed minimal workbook, so that the fuzzer reaches the
 * streaming XML code without having to produce valid zip files.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <zlib.h>

#include "ddts/data.h"

/* A stored (uncompressed) zip with the given members, built in memory. */
struct member {
    const char *name;
    const uint8_t *data;
    size_t n;
};

static void put16(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, v & 0xffff);
    put16(p + 2, v >> 16);
}

static size_t build_zip(const struct member *m, int n, uint8_t *out)
{
    size_t off = 0, offsets[4];
    for (int i = 0; i < n; i++) {
        size_t nl = strlen(m[i].name);
        uint32_t crc = (uint32_t)crc32(0, m[i].data, (uInt)m[i].n);
        offsets[i] = off;
        uint8_t *h = out + off;
        memset(h, 0, 30);
        put32(h, 0x04034b50);
        put16(h + 4, 20);
        put32(h + 14, crc);
        put32(h + 18, (uint32_t)m[i].n);
        put32(h + 22, (uint32_t)m[i].n);
        put16(h + 26, (uint32_t)nl);
        memcpy(h + 30, m[i].name, nl);
        memcpy(h + 30 + nl, m[i].data, m[i].n);
        off += 30 + nl + m[i].n;
    }
    size_t cd = off;
    for (int i = 0; i < n; i++) {
        size_t nl = strlen(m[i].name);
        uint8_t *h = out + off;
        memset(h, 0, 46);
        put32(h, 0x02014b50);
        put16(h + 4, 20);
        put16(h + 6, 20);
        put32(h + 16, (uint32_t)crc32(0, m[i].data, (uInt)m[i].n));
        put32(h + 20, (uint32_t)m[i].n);
        put32(h + 24, (uint32_t)m[i].n);
        put16(h + 28, (uint32_t)nl);
        put32(h + 42, (uint32_t)offsets[i]);
        memcpy(h + 46, m[i].name, nl);
        off += 46 + nl;
    }
    uint8_t *e = out + off;
    memset(e, 0, 22);
    put32(e, 0x06054b50);
    put16(e + 8, (uint32_t)n);
    put16(e + 10, (uint32_t)n);
    put32(e + 12, (uint32_t)(off - cd));
    put32(e + 16, (uint32_t)cd);
    return off + 22;
}

static const char wb[] =
    "<workbook xmlns:r=\"r\"><sheets><sheet name=\"S\" sheetId=\"1\" r:id=\"rId1\"/></sheets>"
    "</workbook>";
static const char rels[] = "<Relationships><Relationship Id=\"rId1\" "
                           "Target=\"worksheets/sheet1.xml\"/></Relationships>";
static const char sst[] = "<sst><si><t>a</t></si><si><r><t>b</t></r></si></sst>";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ddts_array *a = NULL;
    if (ddts_xlsx_parse(data, size, "fuzz.xlsx", NULL, &a, NULL) == DDTS_OK)
        ddts_array_destroy(a);
    if (size > (1u << 20))
        return 0;
    static uint8_t zip[(1u << 20) + 4096];
    struct member m[4] = {
        {"xl/workbook.xml", (const uint8_t *)wb, sizeof wb - 1},
        {"xl/_rels/workbook.xml.rels", (const uint8_t *)rels, sizeof rels - 1},
        {"xl/sharedStrings.xml", (const uint8_t *)sst, sizeof sst - 1},
        {"xl/worksheets/sheet1.xml", data, size},
    };
    size_t n = build_zip(m, 4, zip);
    a = NULL;
    if (ddts_xlsx_parse(zip, n, "fuzz.xlsx", "S", &a, NULL) == DDTS_OK)
        ddts_array_destroy(a);
    return 0;
}
