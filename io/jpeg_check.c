// Debian's stb_image (2.27) trusts a JPEG's structure more than it should. Fuzzing (crashes inside
// libstb, and UBSan on stb built from source) and reading stb's source found these; this walk over
// the segments refuses them before stb sees the file (libjpeg refuses them too):
// - a Huffman table (DHT) with more than 256 codes, or that overruns its segment: stb fills its
//   fixed-size arrays before it checks either, and writes past them;
// - a scan that uses a Huffman or quantisation table the file never defined: stb does not zero its
//   decoder state, so it follows uninitialised table pointers (crashes inside libstb) or
//   multiplies by garbage;
// - a frame component that no scan ever initialises (for a progressive file: no first DC scan):
//   stb's coefficient and sample buffers are not zeroed, so the pixels would be heap garbage;
// - a file cut short: the missing scan data reads as zeros, where PIL raises "image file is
//   truncated".
#include "io/jpeg_check.h"

#include <stdbool.h>

#define JPEG_TABLES 4 // table ids 0..3 (stb rejects others)

typedef struct {
    bool dc[JPEG_TABLES], ac[JPEG_TABLES], quant[JPEG_TABLES];
    bool frame, progressive;
    int n_comp;
    int comp_id[JPEG_TABLES], comp_quant[JPEG_TABLES];
    bool comp_scanned[JPEG_TABLES]; // its buffers are initialised by some scan
} jpeg_state;

// DHT: (class << 4 | id, 16 code-length counts, the values) per table.
static const char *define_huffman(jpeg_state *st, const uint8_t *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        if (i + 17 > len) return "a Huffman table (DHT) overruns its segment";
        size_t count = 0;
        for (int k = 1; k <= 16; k++) count += s[i + k];
        if (count > 256) return "a Huffman table (DHT) has more than 256 codes";
        if (i + 17 + count > len) return "a Huffman table (DHT) overruns its segment";
        int cls = s[i] >> 4, id = s[i] & 15;
        if (cls > 1 || id >= JPEG_TABLES) return "a Huffman table (DHT) has a bad class or id";
        (cls ? st->ac : st->dc)[id] = true;
        i += 17 + count;
    }
    return NULL;
}

// DQT: (precision << 4 | id, 64 values of 8 or 16 bits) per table.
static void define_quant(jpeg_state *st, const uint8_t *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        size_t size = s[i] >> 4 ? 128 : 64;
        if (i + 1 + size > len) return;
        if ((s[i] & 15) < JPEG_TABLES) st->quant[s[i] & 15] = true;
        i += 1 + size;
    }
}

// SOF0/1/2: precision, height, width, then (id, sampling, quantisation table) per component.
static const char *define_frame(jpeg_state *st, uint8_t marker, const uint8_t *s, size_t len) {
    if (st->frame) return "the file has more than one frame header (SOF)";
    if (len < 6 || s[5] == 0 || s[5] > JPEG_TABLES || len < 6 + 3 * (size_t)s[5])
        return "the frame header (SOF) is malformed";
    st->frame = true;
    st->progressive = marker == 0xC2;
    st->n_comp = s[5];
    for (int k = 0; k < st->n_comp; k++) {
        st->comp_id[k] = s[6 + 3 * k];
        st->comp_quant[k] = s[6 + 3 * k + 2];
    }
    return NULL;
}

static int frame_component(const jpeg_state *st, int id) {
    for (int k = 0; k < st->n_comp; k++)
        if (st->comp_id[k] == id) return k;
    return -1;
}

// SOS: count, (component id, DC table << 4 | AC table) each, then Ss, Se, Ah << 4 | Al. Which
// tables stb reads: both in a baseline scan; in a progressive one the DC table for a first DC scan
// (Ss = 0, Ah = 0), none for a DC refinement, the AC table for an AC scan (Ss > 0).
static const char *check_scan(const jpeg_state *st, const uint8_t *s, size_t len) {
    if (!st->frame) return "a scan (SOS) comes before the frame header (SOF)";
    if (len < 1 || len < 1 + 2 * (size_t)s[0] + 3) return "a scan header (SOS) is malformed";
    int n = s[0], ss = s[1 + 2 * n], ah = s[3 + 2 * n] >> 4;
    bool needs_dc = !st->progressive || (ss == 0 && ah == 0);
    bool needs_ac = !st->progressive || ss > 0;
    for (int k = 0; k < n; k++) {
        int c = frame_component(st, s[1 + 2 * k]), dc = s[2 + 2 * k] >> 4, ac = s[2 + 2 * k] & 15;
        if (c < 0) return "a scan uses a component the frame does not have";
        if (st->comp_quant[c] >= JPEG_TABLES || !st->quant[st->comp_quant[c]])
            return "a scan uses a quantisation table that was never defined";
        if (needs_dc && (dc >= JPEG_TABLES || !st->dc[dc]))
            return "a scan uses a DC Huffman table that was never defined";
        if (needs_ac && (ac >= JPEG_TABLES || !st->ac[ac]))
            return "a scan uses an AC Huffman table that was never defined";
    }
    return NULL;
}

// Marks the components whose buffers the scan initialises: all of a baseline scan's, and those of
// a progressive first DC scan, which zeroes whole blocks. (check_scan has validated the header.)
static void mark_scanned(jpeg_state *st, const uint8_t *s) {
    int n = s[0];
    if (st->progressive && (s[1 + 2 * n] != 0 || s[3 + 2 * n] >> 4 != 0)) return;
    for (int k = 0; k < n; k++) st->comp_scanned[frame_component(st, s[1 + 2 * k])] = true;
}

// At the end of the image: every component initialised and its quantisation table defined.
static const char *check_end(const jpeg_state *st) {
    if (!st->frame) return "the file has no frame header (SOF)";
    for (int k = 0; k < st->n_comp; k++) {
        if (!st->comp_scanned[k]) return "a frame component is never decoded by a scan";
        if (st->comp_quant[k] >= JPEG_TABLES || !st->quant[st->comp_quant[k]])
            return "a frame component's quantisation table was never defined";
    }
    return NULL;
}

static const char *check_segment(jpeg_state *st, uint8_t marker, const uint8_t *s, size_t len) {
    if (marker == 0xC4) return define_huffman(st, s, len);
    if (marker == 0xDB) define_quant(st, s, len);
    if (marker == 0xC0 || marker == 0xC1 || marker == 0xC2) return define_frame(st, marker, s, len);
    if (marker != 0xDA) return NULL;
    const char *problem = check_scan(st, s, len);
    if (!problem) mark_scanned(st, s);
    return problem;
}

// Header segments are skipped by their length (an EXIF thumbnail's own markers stay unseen); in
// entropy-coded data a 0xFF is followed by 0x00 (stuffing) or a restart marker unless it starts
// the next segment.
const char *jpeg_check(const uint8_t *p, size_t n) {
    jpeg_state st = {0};
    size_t i = 2; // after SOI
    while (i + 1 < n) {
        uint8_t marker = p[i + 1];
        if (p[i] != 0xFF || marker == 0xFF) {
            i++; // scan data, padding or fill bytes
        } else if (marker == 0xD9) {
            return check_end(&st);
        } else if (marker == 0x00 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD8)) {
            i += 2; // stuffed byte, TEM, RSTn, SOI: no length field
        } else {
            if (i + 4 > n) break;
            size_t length = (size_t)p[i + 2] << 8 | p[i + 3];
            if (length < 2 || i + 2 + length > n) break;
            const char *problem = check_segment(&st, marker, p + i + 4, length - 2);
            if (problem) return problem;
            i += 2 + length;
        }
    }
    return "truncated: no end-of-image marker";
}
