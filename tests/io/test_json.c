// io/json: the DOM of valid documents (values, key order, exact integers, escapes, paths), the
// JSONTestSuite-style documents a strict parser must reject with their positions, and the typed
// getters' messages.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/json.h"
#include "tests/test_util.h"

static json_value *parse_ok(const char *text, size_t len) {
    json_value *v = NULL;
    petal_status st = json_parse(text, len, "test.json", &v);
    ck_assert_msg(st == PETAL_OK, "rejected %s: %s", text, petal_error_message());
    return v;
}

static json_value *parse_str(const char *text) {
    return parse_ok(text, strlen(text));
}

// Rejects text with PETAL_ERR_FORMAT and a message containing each of the given pieces.
static bool rejects(const char *text, size_t len, const char *piece1, const char *piece2) {
    json_value *v = (json_value *)1;
    petal_status st = json_parse(text, len, "test.json", &v);
    const char *msg = petal_error_message();
    bool ok = st == PETAL_ERR_FORMAT && v == NULL && strstr(msg, piece1) &&
              (!piece2 || strstr(msg, piece2));
    if (!ok)
        fprintf(stderr, "input %.*s: status %s, message \"%s\"; want \"%s\" and \"%s\"\n", (int)len,
                text, petal_status_name(st), msg, piece1, piece2 ? piece2 : "");
    if (st == PETAL_OK) json_free(v);
    return ok;
}

START_TEST(test_values) {
    json_value *v = parse_str(" {\"b\": [1, -2.5, \"x\", true, false, null, {}, []], \"a\": {}} ");
    ck_assert_int_eq(v->type, JSON_OBJECT);
    ck_assert_uint_eq(json_len(v), 2);
    ck_assert_str_eq(v->object.members[0].key, "b"); // document order, not sorted
    ck_assert_str_eq(v->object.members[1].key, "a");
    const json_value *b = json_get(v, "b");
    ck_assert_uint_eq(json_len(b), 8);
    ck_assert(json_at(b, 0)->number.is_int && json_at(b, 0)->number.exact == 1);
    ck_assert(!json_at(b, 1)->number.is_int && json_at(b, 1)->number.value == -2.5);
    ck_assert_str_eq(json_at(b, 2)->string.chars, "x");
    ck_assert(json_at(b, 3)->type == JSON_BOOL && json_at(b, 3)->boolean);
    ck_assert(json_at(b, 4)->type == JSON_BOOL && !json_at(b, 4)->boolean);
    ck_assert_int_eq(json_at(b, 5)->type, JSON_NULL);
    ck_assert_int_eq(json_at(b, 6)->type, JSON_OBJECT);
    ck_assert_uint_eq(json_len(json_at(b, 7)), 0);
    ck_assert_ptr_null(json_at(b, 8));
    ck_assert_ptr_null(json_get(v, "c"));
    ck_assert_ptr_null(json_get(b, "b")); // not an object
    ck_assert_ptr_eq(json_at(b, 2)->parent, b);
    ck_assert_ptr_eq(b->parent, v);
    json_free(v);

    const char *scalars[] = {"null", "true", " false ", "0", "-0", "\"\"", "[]", "{}", "\t\r\n1\n"};
    for (size_t i = 0; i < sizeof scalars / sizeof *scalars; i++) json_free(parse_str(scalars[i]));
}
END_TEST

static void check_number(const char *text, double value, bool is_int, int64_t exact) {
    json_value *v = parse_str(text);
    ck_assert_int_eq(v->type, JSON_NUMBER);
    ck_assert_msg(v->number.value == value, "%s: value %.17g, want %.17g", text, v->number.value,
                  value);
    ck_assert_msg(v->number.is_int == is_int, "%s: is_int %d", text, v->number.is_int);
    if (is_int)
        ck_assert_msg(v->number.exact == exact, "%s: exact %lld, want %lld", text,
                      (long long)v->number.exact, (long long)exact);
    json_free(v);
}

START_TEST(test_numbers) {
    check_number("0", 0, true, 0);
    check_number("-0", -0.0, true, 0);
    json_value *z = parse_str("-0.0");
    ck_assert(signbit(z->number.value) && z->number.is_int && z->number.exact == 0);
    json_free(z);
    check_number("42", 42, true, 42);
    check_number("1e3", 1000, true, 1000);
    check_number("1E+2", 100, true, 100);
    check_number("2.50e1", 25, true, 25);
    check_number("-12.000", -12, true, -12);
    check_number("1.5", 1.5, false, 0);
    check_number("1e-2", 0.01, false, 0);
    check_number("0.1", 0.1, false, 0);
    check_number("9007199254740993", 9007199254740992.0, true, 9007199254740993LL);
    check_number("9223372036854775807", 9223372036854775807.0, true, INT64_MAX);
    check_number("-9223372036854775808", -9223372036854775808.0, true, INT64_MIN);
    check_number("9223372036854775808", 9223372036854775808.0, false, 0);
    check_number("-9223372036854775809", -9223372036854775808.0, false, 0);
    check_number("123456789012345678901234567890", 1.2345678901234568e29, false, 0);
}
END_TEST

START_TEST(test_huge_numbers) {
    ck_assert(rejects("1e400", 5, "1:1 (byte 0)", "range of a double, found 1e400"));
    ck_assert(rejects("[-1E309]", 8, "1:2 (byte 1)", "range of a double"));
    check_number("1e-400", 0, false, 0); // underflow to zero is representable
    check_number("4.9406564584124654e-324", 4.9406564584124654e-324, false, 0);
    check_number("1.7976931348623157e308", 1.7976931348623157e308, false, 0);
    // 400 digits: too long for int64, still a double
    char big[402] = "1";
    memset(big + 1, '0', 400);
    big[401] = '\0';
    ck_assert(rejects(big, 401, "range of a double", NULL));
    big[300] = '\0';
    check_number(big, 1e299, false, 0);
}
END_TEST

START_TEST(test_strings) {
    json_value *v =
        parse_str("[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\", \"\\u00e9\\u00E9\", "
                  "\"\\ud83d\\ude00\", \"a\\u0000b\", \"\xe6\x97\xa5\xf4\x8f\xbf\xbf\"]");
    ck_assert_str_eq(json_at(v, 0)->string.chars, "\"\\/\b\f\n\r\t");
    ck_assert_str_eq(json_at(v, 1)->string.chars, "\xc3\xa9\xc3\xa9");
    ck_assert_str_eq(json_at(v, 2)->string.chars, "\xf0\x9f\x98\x80");
    ck_assert_uint_eq(json_at(v, 3)->string.len, 3);
    ck_assert_int_eq(memcmp(json_at(v, 3)->string.chars, "a\0b", 4), 0);
    ck_assert_str_eq(json_at(v, 4)->string.chars, "\xe6\x97\xa5\xf4\x8f\xbf\xbf");
    json_free(v);
    // a byte order mark is skipped; input need not be NUL-terminated
    json_free(parse_str("\xEF\xBB\xBF[1]"));
    v = parse_ok("[1,2]garbage", 5);
    ck_assert_uint_eq(json_len(v), 2);
    json_free(v);
}
END_TEST

START_TEST(test_invalid_documents) {
    struct {
        const char *text, *piece1, *piece2;
    } cases[] = {
        {"", "1:1 (byte 0)", "expected a value"},
        {"   ", "1:4 (byte 3)", "found end of input"},
        {"[1,]", "1:4 (byte 3)", "no trailing commas"},
        {"{\"a\":1,}", "1:8 (byte 7)", "no trailing commas"},
        {"[,1]", "1:2", "expected a value"},
        {"[1,,2]", "1:4", "expected a value"},
        {"01", "1:1", "without leading zeros, found '01'"},
        {"-012", "1:2", "leading zeros"},
        {"00", "1:1", "leading zeros"},
        {"1.", "1:3", "a digit after the decimal point"},
        {"-", "1:2", "a digit after '-'"},
        {".5", "1:1", "expected a value"},
        {"+1", "1:1", "expected a value"},
        {"1e", "1:3", "a digit in the exponent"},
        {"1e+", "1:4", "a digit in the exponent"},
        {"0x10", "1:2", "end of input after the top-level value, found 'x'"},
        {"NaN", "1:1", "expected a value"},
        {"Infinity", "1:1", "expected a value"},
        {"-Infinity", "1:2", "a digit after '-'"},
        {"tru", "1:1", "expected 'true', found 't'"},
        {"nul", "1:1", "expected 'null'"},
        {"True", "1:1", "expected a value"},
        {"\"\\ud800\"", "1:2", "lone high surrogate \\uD800"},
        {"\"\\udc00\"", "1:2", "lone low surrogate \\uDC00"},
        {"\"\\ud800\\u0041\"", "1:8", "expected a low surrogate \\uDC00-\\uDFFF after \\uD800"},
        {"\"\\ud800x\"", "1:2", "lone high surrogate"},
        {"\"abc", "1:5 (byte 4)", "close the string opened at line 1 column 1"},
        {"\"a\tb\"", "1:3", "control character 0x09"},
        {"\"a\nb\"", "1:3", "control character 0x0a"},
        {"\"\\x\"", "1:3", "expected an escape"},
        {"\"\\u12g4\"", "1:6", "4 hex digits"},
        {"\"\\u12", "1:6", "4 hex digits"},
        {"\"\xff\"", "1:2", "invalid byte 0xff"},
        {"\"\xc0\xaf\"", "1:2", "invalid byte 0xc0"},
        {"\"\xed\xa0\x80\"", "1:2", "invalid byte 0xed"},
        {"\"\xe2\x82\"", "1:2", "invalid byte 0xe2"},
        {"\"\xf4\x90\x80\x80\"", "1:2", "invalid byte 0xf4"},
        {"[1 2]", "1:4", "',' or ']' after an array element, found '2'"},
        {"{\"a\" 1}", "1:6", "':' after an object key"},
        {"{1:2}", "1:2", "a string key"},
        {"{'a':1}", "1:2", "a string key, found '''"},
        {"{\"a\":1,\"b\":2,\"a\":3}", "1:1", "unique keys in this object, found \"a\" twice"},
        {"[1] x", "1:5", "end of input after the top-level value"},
        {"1 2", "1:3", "end of input"},
        {"[", "1:2", "found end of input"},
        {"{", "1:2", "a string key, found end of input"},
        {"{\"a\":", "1:6", "expected a value"},
        {"[1}", "1:3", "',' or ']'"},
        {"{\"a\":1]", "1:7", "',' or '}' after an object member"},
        {"// c\n1", "1:1", "expected a value"},
        {"/*c*/1", "1:1", "expected a value"},
        {"{\n  \"a\": tru\n}", "2:8 (byte 9)", "expected 'true'"},
        {"[\"\xc3\xa9\", x]", "1:7 (byte 7)", "found 'x'"},
        {"\xEF\xBB", "1:1", "found byte 0xef"},
        {"[1]\xc2\xa0", "1:4", "found byte 0xc2"}, // NBSP is not JSON whitespace
        {"\x0c[1]", "1:1", "found byte 0x0c"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        ck_assert_msg(
            rejects(cases[i].text, strlen(cases[i].text), cases[i].piece1, cases[i].piece2),
            "case %zu", i);
    ck_assert(rejects("[1]\0", 4, "1:4", "found byte 0x00"));
    ck_assert(rejects("\"a\0b\"", 5, "1:3", "control character 0x00"));
}
END_TEST

// '[' * depth, then "1", then ']' * depth.
static char *nested(int depth) {
    char *s = malloc((size_t)depth * 2 + 2);
    memset(s, '[', (size_t)depth);
    s[depth] = '1';
    memset(s + depth + 1, ']', (size_t)depth);
    s[2 * depth + 1] = '\0';
    return s;
}

START_TEST(test_depth_limit) {
    char *ok = nested(JSON_MAX_DEPTH), *deep = nested(JSON_MAX_DEPTH + 1);
    json_value *v = parse_str(ok);
    const json_value *u = v;
    for (int i = 0; i < JSON_MAX_DEPTH; i++) u = json_at(u, 0);
    ck_assert(u->number.is_int && u->number.exact == 1);
    json_free(v);
    ck_assert(rejects(deep, strlen(deep), "(byte 512)", "at most 512 nested"));
    // deep enough to overflow the C stack of a parser without a limit
    char *very = nested(1000000);
    ck_assert(rejects(very, strlen(very), "at most 512 nested", NULL));
    free(ok);
    free(deep);
    free(very);
}
END_TEST

START_TEST(test_paths_and_typed_getters) {
    json_value *v = parse_str("[{\"image\": \"a.jpg\", \"caption\": 3, \"n\": 1.5, \"ok\": true},"
                              " {\"x y\": [{\"k\": {}}]}]");
    const json_value *e0 = json_at(v, 0),
                     *deep = json_get(json_at(json_get(json_at(v, 1), "x y"), 0), "k");
    char path[256];
    ck_assert_str_eq(json_path(v, path, sizeof path), "(root)");
    ck_assert_str_eq(json_path(json_get(e0, "caption"), path, sizeof path), "[0].caption");
    ck_assert_str_eq(json_path(deep, path, sizeof path), "[1][\"x y\"][0].k");
    ck_assert_str_eq(json_source(deep), "test.json");

    const char *s;
    size_t len;
    ck_assert_int_eq(json_get_string(e0, "image", &s, &len), PETAL_OK);
    ck_assert(strcmp(s, "a.jpg") == 0 && len == 5);
    ck_assert_int_eq(json_get_string(e0, "caption", &s, NULL), PETAL_ERR_FORMAT);
    ck_assert_str_eq(petal_error_message(),
                     "test.json: [0].caption: expected a string, found a number (3)");
    ck_assert_int_eq(json_get_string(e0, "captions", &s, NULL), PETAL_ERR_KEY);
    ck_assert_str_eq(petal_error_message(), "test.json: [0]: missing key \"captions\"");
    int64_t i;
    ck_assert_int_eq(json_get_int(e0, "n", &i), PETAL_ERR_FORMAT);
    ck_assert_str_eq(
        petal_error_message(),
        "test.json: [0].n: expected an integer (exact in 64 bits), found a number (1.5)");
    ck_assert_int_eq(json_get_int(e0, "caption", &i), PETAL_OK);
    ck_assert_int_eq(i, 3);
    double d;
    ck_assert_int_eq(json_get_number(e0, "n", &d), PETAL_OK);
    ck_assert(d == 1.5);
    bool b;
    ck_assert_int_eq(json_get_bool(e0, "ok", &b), PETAL_OK);
    ck_assert(b);
    ck_assert_int_eq(json_get_bool(e0, "image", &b), PETAL_ERR_FORMAT);
    ck_assert_str_eq(petal_error_message(),
                     "test.json: [0].image: expected a boolean, found a string (\"a.jpg\")");
    const json_value *o;
    ck_assert_int_eq(json_as_object(v, &o), PETAL_ERR_FORMAT);
    ck_assert_str_eq(petal_error_message(),
                     "test.json: (root): expected an object, found an array");
    ck_assert_int_eq(json_get_array(v, "image", &o), PETAL_ERR_FORMAT);
    ck_assert_int_eq(json_get_object(json_at(v, 1), "x y", &o), PETAL_ERR_FORMAT);
    ck_assert_str_eq(petal_error_message(),
                     "test.json: [1][\"x y\"]: expected an object, found an array");
    ck_assert_int_eq(json_get_array(json_at(v, 1), "x y", &o), PETAL_OK);
    ck_assert_int_eq(json_as_array(o, &o), PETAL_OK);
    json_free(v);
}
END_TEST

START_TEST(test_large_and_files) {
    // 100,000 elements: parents and indices survive the moves between stacks and the arena
    size_t n = 100000;
    char *text = malloc(n * 16 + 16), *p = text;
    p += sprintf(p, "[");
    for (size_t i = 0; i < n; i++) p += sprintf(p, "%s{\"i\":[%zu]}", i ? "," : "", i);
    sprintf(p, "]");
    json_value *v = parse_str(text);
    for (size_t i = 0; i < n; i += 997) {
        const json_value *e = json_at(json_get(json_at(v, i), "i"), 0);
        ck_assert(e->number.exact == (int64_t)i);
        ck_assert_ptr_eq(e->parent->parent->parent, v);
        ck_assert_uint_eq(e->parent->parent->index, i);
    }
    json_free(v);

    char path[] = "/tmp/petal-json-XXXXXX";
    int fd = mkstemp(path);
    ck_assert(fd >= 0);
    ck_assert(write(fd, "{\"a\": [1, 2,]}", 14) == 14);
    close(fd);
    ck_assert_int_eq(json_parse_file(path, &v), PETAL_ERR_FORMAT);
    ck_assert_msg(strstr(petal_error_message(), path) && strstr(petal_error_message(), ":1:13"),
                  "%s", petal_error_message());
    unlink(path);
    ck_assert_int_eq(json_parse_file(path, &v), PETAL_ERR_IO);
    ck_assert(strstr(petal_error_message(), path));
    ck_assert_int_eq(json_parse_file("/tmp", &v), PETAL_ERR_IO);
    free(text);
}
END_TEST

// Bounds for untrusted text stop the parser at the value that passes one: a million-item array is
// refused at its seventh item, and within the bounds documents parse as json_parse does.
START_TEST(test_limits) {
    json_limits limits = {.max_depth = 2, .max_array_len = 6, .max_values = 20, .note = "why"};
    json_value *v = NULL;
    const char *fits = "{\"a\": [1, 2, 3, 4, 5, 6], \"b\": {}}";
    ck_assert_int_eq(json_parse_limited(fits, strlen(fits), "t.json", &limits, &v), PETAL_OK);
    ck_assert_int_eq(json_len(json_get(v, "a")), 6);
    json_free(v);
    size_t n = 1 << 20;
    char *huge = malloc(2 * n + 2);
    huge[0] = '[';
    for (size_t i = 0; i < n; i++) memcpy(huge + 1 + 2 * i, i + 1 < n ? "0," : "0]", 2);
    ck_assert_int_eq(json_parse_limited(huge, 2 * n + 1, "t.json", &limits, &v), PETAL_ERR_FORMAT);
    ck_assert_str_eq(
        petal_error_message(),
        "t.json:1:14 (byte 13): expected at most 6 items in an array, found more (why)");
    ck_assert_ptr_null(v);
    const struct {
        const char *text, *piece;
    } refused[] = {
        {"[[[1]]]", "t.json:1:3 (byte 2): expected at most 2 nested arrays and objects"},
        {"[[1,2],[3,4],[5,6],[7,8],[9,0],[1,2],[3,4]]", "at most 6 items"},
        {"{\"a\":[1,2,3],\"b\":[4,5,6],\"c\":[7,8,9],\"d\":[1,2,3],\"e\":[4,5,6]}",
         "expected at most 20 values in the document, found more (why)"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        petal_status st =
            json_parse_limited(refused[i].text, strlen(refused[i].text), "t.json", &limits, &v);
        ck_assert_msg(st == PETAL_ERR_FORMAT && strstr(petal_error_message(), refused[i].piece),
                      "%s: %s", refused[i].text, petal_error_message());
    }
    // json_parse has no bounds but the depth.
    ck_assert_int_eq(json_parse(huge, 2 * n + 1, "t.json", &v), PETAL_OK);
    ck_assert_uint_eq(json_len(v), n);
    json_free(v);
    free(huge);
}
END_TEST

int main(void) {
    Suite *s = suite_create("io_json");
    TCase *tc = tcase_with_timeout("json", 60);
    tcase_add_test(tc, test_values);
    tcase_add_test(tc, test_numbers);
    tcase_add_test(tc, test_huge_numbers);
    tcase_add_test(tc, test_strings);
    tcase_add_test(tc, test_invalid_documents);
    tcase_add_test(tc, test_depth_limit);
    tcase_add_test(tc, test_limits);
    tcase_add_test(tc, test_paths_and_typed_getters);
    tcase_add_test(tc, test_large_and_files);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
