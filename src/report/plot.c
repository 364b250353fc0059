/*
 * Loss and accuracy curves as PNG images, drawn with cairo (the only user of
 * cairo). A figure is a title over panels side by side; each panel has axes
 * with "nice" ticks (1, 2 or 5 times a power of ten), a light grid, axis
 * labels, its curves and a legend.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <cairo.h>

#include "ddts/fs.h"
#include "ddts/report.h"

/* Matplotlib's "tab10" palette: distinct, readable on white, colour-blind aware. */
static const uint32_t palette[10] = {0x1f77b4, 0xff7f0e, 0x2ca02c, 0xd62728, 0x9467bd,
                                     0x8c564b, 0xe377c2, 0x7f7f7f, 0xbcbd22, 0x17becf};

#define FONT "DejaVu Sans"

struct axis {
    double lo, hi, step;
};

/* Rounds [lo, hi] out to ticks about (hi - lo) / target apart. */
static void nice_axis(double lo, double hi, int target, bool integral, struct axis *a)
{
    if (!(hi > lo)) {
        double pad = fabs(lo) > 1e-12 ? fabs(lo) * 0.1 : 0.5;
        lo -= pad;
        hi += pad;
    }
    double raw = (hi - lo) / target;
    double mag = pow(10, floor(log10(raw)));
    double norm = raw / mag;
    double step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
    if (integral && step < 1)
        step = 1;
    a->step = step;
    a->lo = floor(lo / step + 1e-9) * step;
    a->hi = ceil(hi / step - 1e-9) * step;
    if (!(a->hi > a->lo))
        a->hi = a->lo + step;
}

static void set_rgb(cairo_t *cr, uint32_t rgb)
{
    cairo_set_source_rgb(cr, (rgb >> 16 & 255) / 255.0, (rgb >> 8 & 255) / 255.0,
                         (rgb & 255) / 255.0);
}

/* Draws text with its anchor at (x, y): ax, ay in {0, 0.5, 1} of its box. */
static void text_at(cairo_t *cr, const char *s, double x, double y, double ax, double ay)
{
    cairo_text_extents_t e;
    cairo_text_extents(cr, s, &e);
    cairo_move_to(cr, x - e.x_bearing - e.width * ax, y - e.y_bearing - e.height * ay);
    cairo_show_text(cr, s);
}

static void font(cairo_t *cr, double size, bool bold)
{
    cairo_select_font_face(cr, FONT, CAIRO_FONT_SLANT_NORMAL,
                           bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, size);
}

static void tick_label(char *buf, size_t cap, double v, double step)
{
    int dec = 0;
    if (step < 1)
        dec = (int)ceil(-log10(step) - 1e-9);
    if (dec > 8)
        dec = 8;
    if (fabs(v) < step * 1e-6)
        v = 0;
    if (fabs(v) >= 1e6 || (fabs(v) > 0 && fabs(v) < 1e-4))
        snprintf(buf, cap, "%.2g", v);
    else
        snprintf(buf, cap, "%.*f", dec, v);
}

static double xval(const struct ddts_plot_series *s, size_t i)
{
    return s->x != NULL ? s->x[i] : (double)(i + 1);
}

/* A panel's plot area in pixels and its axes, mapping data to pixels. */
struct frame {
    double left, right, top, bottom;
    struct axis ax, ay;
    double sx, sy;
};

/* The pixel column of data x value v. */
static double fx(const struct frame *f, double v)
{
    return f->left + (v - f->ax.lo) * f->sx;
}

/* The pixel row of data y value v. */
static double fy(const struct frame *f, double v)
{
    return f->bottom - (v - f->ay.lo) * f->sy;
}

/* The data ranges over the finite points of a panel; false when it has none
 * (the ranges are then 1..2 and 0..1). integral: every x is an integer. */
static bool data_range(const struct ddts_plot_panel *p, double *xlo_out, double *xhi_out,
                       double *ylo_out, double *yhi_out, bool *integral_out)
{
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    bool integral = true;
    for (size_t k = 0; k < p->n_series; k++) {
        const struct ddts_plot_series *s = &p->series[k];
        for (size_t i = 0; i < s->n; i++) {
            double x = xval(s, i), y = s->y[i];
            if (!isfinite(x) || !isfinite(y))
                continue;
            xlo = fmin(xlo, x);
            xhi = fmax(xhi, x);
            ylo = fmin(ylo, y);
            yhi = fmax(yhi, y);
            integral = integral && x == floor(x);
        }
    }
    bool empty = !(xlo <= xhi);
    if (empty) {
        xlo = 1;
        xhi = 2;
        ylo = 0;
        yhi = 1;
    }
    *xlo_out = xlo;
    *xhi_out = xhi;
    *ylo_out = ylo;
    *yhi_out = yhi;
    *integral_out = integral;
    return !empty;
}

/* The grid lines, tick marks and tick labels of both axes, and the frame. */
static void draw_grid(cairo_t *cr, const struct frame *f)
{
    font(cr, 12, false);
    cairo_set_line_width(cr, 1);
    char lab[48];
    for (int i = 0;; i++) {
        double v = f->ay.lo + i * f->ay.step;
        if (v > f->ay.hi + f->ay.step * 1e-6 || i > 100)
            break;
        double y = floor(fy(f, v)) + 0.5;
        set_rgb(cr, 0xe4e4e4);
        cairo_move_to(cr, f->left, y);
        cairo_line_to(cr, f->right, y);
        cairo_stroke(cr);
        set_rgb(cr, 0x000000);
        cairo_move_to(cr, f->left - 5, y);
        cairo_line_to(cr, f->left, y);
        cairo_stroke(cr);
        tick_label(lab, sizeof lab, v, f->ay.step);
        text_at(cr, lab, f->left - 8, y, 1, 0.5);
    }
    for (int i = 0;; i++) {
        double v = f->ax.lo + i * f->ax.step;
        if (v > f->ax.hi + f->ax.step * 1e-6 || i > 100)
            break;
        double x = floor(fx(f, v)) + 0.5;
        set_rgb(cr, 0xe4e4e4);
        cairo_move_to(cr, x, f->top);
        cairo_line_to(cr, x, f->bottom);
        cairo_stroke(cr);
        set_rgb(cr, 0x000000);
        cairo_move_to(cr, x, f->bottom);
        cairo_line_to(cr, x, f->bottom + 5);
        cairo_stroke(cr);
        tick_label(lab, sizeof lab, v, f->ax.step);
        text_at(cr, lab, x, f->bottom + 8, 0.5, 0);
    }
    set_rgb(cr, 0x000000);
    cairo_rectangle(cr, floor(f->left) + 0.5, floor(f->top) + 0.5, floor(f->right - f->left),
                    floor(f->bottom - f->top));
    cairo_stroke(cr);
}

/* The curves (dots too for up to 60 points), clipped to the plot area;
 * colours[k] gets series k's colour (k < 64) for the legend. */
static void draw_curves(cairo_t *cr, const struct ddts_plot_panel *p, const struct frame *f,
                        size_t *colour_next, uint32_t colours[64])
{
    cairo_save(cr);
    cairo_rectangle(cr, f->left, f->top, f->right - f->left, f->bottom - f->top);
    cairo_clip(cr);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    cairo_set_line_cap(cr, CAIRO_LINE_CAP_ROUND);
    for (size_t k = 0; k < p->n_series; k++) {
        const struct ddts_plot_series *s = &p->series[k];
        uint32_t rgb = s->rgb != 0 ? s->rgb : palette[(*colour_next)++ % 10];
        if (k < 64)
            colours[k] = rgb;
        set_rgb(cr, rgb);
        cairo_set_line_width(cr, s->width > 0 ? s->width : 2);
        static const double dash[2] = {7, 4};
        cairo_set_dash(cr, dash, s->dashed ? 2 : 0, 0);
        bool pen = false;
        for (size_t i = 0; i < s->n; i++) {
            double x = xval(s, i), y = s->y[i];
            if (!isfinite(x) || !isfinite(y)) {
                pen = false;
                continue;
            }
            if (pen)
                cairo_line_to(cr, fx(f, x), fy(f, y));
            else
                cairo_move_to(cr, fx(f, x), fy(f, y));
            pen = true;
        }
        cairo_stroke(cr);
        cairo_set_dash(cr, NULL, 0, 0);
        if (s->n <= 60) {
            for (size_t i = 0; i < s->n; i++) {
                double x = xval(s, i), y = s->y[i];
                if (!isfinite(x) || !isfinite(y))
                    continue;
                cairo_arc(cr, fx(f, x), fy(f, y), s->width > 2.5 ? 4 : 3, 0, 2 * M_PI);
                cairo_fill(cr);
            }
        }
    }
    cairo_restore(cr);
}

/* The corner for a bw x bh legend box whose box covers the fewest curve
 * points (and segment midpoints), top right first on ties, as matplotlib's
 * loc="best". */
static void legend_corner(const struct ddts_plot_panel *p, const struct frame *f, double bw,
                          double bh, double *bx, double *by)
{
    *bx = f->right - bw - 8;
    *by = f->top + 8;
    long best = -1;
    for (int corner = 0; corner < 4; corner++) {
        double cx = corner % 2 == 0 ? f->right - bw - 8 : f->left + 8;
        double cy = corner < 2 ? f->top + 8 : f->bottom - bh - 8;
        long hits = 0;
        for (size_t k = 0; k < p->n_series; k++) {
            const struct ddts_plot_series *s = &p->series[k];
            for (size_t i = 0; i < s->n; i++) {
                for (int half = 0; half < 2; half++) {
                    if (half == 1 && i + 1 >= s->n)
                        break;
                    double x = xval(s, i), y = s->y[i];
                    if (half == 1) {
                        x = (x + xval(s, i + 1)) / 2;
                        y = (y + s->y[i + 1]) / 2;
                    }
                    if (!isfinite(x) || !isfinite(y))
                        continue;
                    double qx = fx(f, x), qy = fy(f, y);
                    hits += qx >= cx - 4 && qx <= cx + bw + 4 && qy >= cy - 4 && qy <= cy + bh + 4;
                }
            }
        }
        if (best < 0 || hits < best) {
            best = hits;
            *bx = cx;
            *by = cy;
        }
    }
}

/* The legend of the labelled series (none when no series has a label),
 * in the corner legend_corner picks; colours from draw_curves. */
static void draw_legend(cairo_t *cr, const struct ddts_plot_panel *p, const struct frame *f,
                        const uint32_t colours[64])
{
    font(cr, 12, false);
    double lw = 0;
    size_t n_leg = 0;
    for (size_t k = 0; k < p->n_series; k++) {
        if (p->series[k].label == NULL)
            continue;
        cairo_text_extents_t e;
        cairo_text_extents(cr, p->series[k].label, &e);
        lw = fmax(lw, e.x_advance);
        n_leg++;
    }
    if (n_leg == 0)
        return;
    double row = 18, bw = lw + 52, bh = (double)n_leg * row + 10;
    double bx, by;
    legend_corner(p, f, bw, bh, &bx, &by);
    cairo_set_source_rgba(cr, 1, 1, 1, 0.88);
    cairo_rectangle(cr, bx, by, bw, bh);
    cairo_fill_preserve(cr);
    set_rgb(cr, 0xbbbbbb);
    cairo_set_line_width(cr, 1);
    cairo_stroke(cr);
    size_t j = 0;
    for (size_t k = 0; k < p->n_series; k++) {
        const struct ddts_plot_series *s = &p->series[k];
        if (s->label == NULL)
            continue;
        double y = by + 5 + row * ((double)j + 0.5);
        set_rgb(cr, k < 64 ? colours[k] : 0);
        cairo_set_line_width(cr, s->width > 0 ? s->width : 2);
        static const double dash[2] = {7, 4};
        cairo_set_dash(cr, dash, s->dashed ? 2 : 0, 0);
        cairo_move_to(cr, bx + 8, y);
        cairo_line_to(cr, bx + 38, y);
        cairo_stroke(cr);
        cairo_set_dash(cr, NULL, 0, 0);
        set_rgb(cr, 0x000000);
        text_at(cr, s->label, bx + 44, y, 0, 0.5);
        j++;
    }
}

/* One panel in the box (px, py, pw, ph): title, axes, labels, curves, legend. */
static void draw_panel(cairo_t *cr, const struct ddts_plot_panel *p, double px, double py,
                       double pw, double ph, size_t *colour_next)
{
    struct frame f = {
        .left = px + 78, .right = px + pw - 22, .top = py + 34, .bottom = py + ph - 58};
    if (f.right - f.left < 20 || f.bottom - f.top < 20)
        return;
    double xlo, xhi, ylo, yhi;
    bool integral;
    bool empty = !data_range(p, &xlo, &xhi, &ylo, &yhi, &integral);
    nice_axis(xlo, xhi, 8, integral, &f.ax);
    double pad = (yhi - ylo) * 0.05;
    nice_axis(ylo - pad, yhi + pad, 6, false, &f.ay);
    f.sx = (f.right - f.left) / (f.ax.hi - f.ax.lo);
    f.sy = (f.bottom - f.top) / (f.ay.hi - f.ay.lo);

    /* Panel title. */
    set_rgb(cr, 0x000000);
    font(cr, 16, true);
    if (p->title != NULL)
        text_at(cr, p->title, (f.left + f.right) / 2, py + 8, 0.5, 0);

    draw_grid(cr, &f);

    /* Axis labels. */
    font(cr, 13, false);
    if (p->xlabel != NULL)
        text_at(cr, p->xlabel, (f.left + f.right) / 2, f.bottom + 30, 0.5, 0);
    if (p->ylabel != NULL) {
        cairo_save(cr);
        cairo_translate(cr, px + 16, (f.top + f.bottom) / 2);
        cairo_rotate(cr, -M_PI / 2);
        text_at(cr, p->ylabel, 0, 0, 0.5, 0.5);
        cairo_restore(cr);
    }
    if (empty) {
        set_rgb(cr, 0x888888);
        text_at(cr, "no data", (f.left + f.right) / 2, (f.top + f.bottom) / 2, 0.5, 0.5);
    }

    uint32_t colours[64];
    draw_curves(cr, p, &f, colour_next, colours);
    draw_legend(cr, p, &f, colours);
}

static cairo_status_t write_png_chunk(void *closure, const unsigned char *data, unsigned int n)
{
    return fwrite(data, 1, n, closure) == n ? CAIRO_STATUS_SUCCESS : CAIRO_STATUS_WRITE_ERROR;
}

enum ddts_status ddts_plot_write_png(const char *path, const char *title,
                                     const struct ddts_plot_panel *panels, size_t n_panels,
                                     int width, int height, struct ddts_error *err)
{
    if (width < 200 || height < 150 || width > 8192 || height > 8192)
        return ddts_error_set(err, DDTS_EINVAL, "%s: plot size %dx%d (from 200x150 to 8192x8192)",
                              path, width, height);
    if (n_panels == 0 || n_panels > 16)
        return ddts_error_set(err, DDTS_EINVAL, "%s: %zu panels (1 to 16)", path, n_panels);
    for (size_t k = 0; k < n_panels; k++)
        for (size_t i = 0; i < panels[k].n_series; i++)
            if (panels[k].series[i].y == NULL && panels[k].series[i].n > 0)
                return ddts_error_set(err, DDTS_EINVAL, "%s: series without values", path);
    cairo_surface_t *surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height);
    cairo_t *cr = cairo_create(surf);
    enum ddts_status st = DDTS_OK;
    if (cairo_status(cr) != CAIRO_STATUS_SUCCESS) {
        st = ddts_error_set(err, DDTS_ENOMEM, "%s: cannot create a %dx%d image: %s", path, width,
                            height, cairo_status_to_string(cairo_status(cr)));
        goto out;
    }
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    double top = 0;
    if (title != NULL && title[0] != '\0') {
        set_rgb(cr, 0x000000);
        font(cr, 19, true);
        text_at(cr, title, width / 2.0, 10, 0.5, 0);
        top = 38;
    }
    size_t colour_next = 0;
    double pw = (double)width / (double)n_panels;
    for (size_t k = 0; k < n_panels; k++) {
        size_t c = colour_next;
        draw_panel(cr, &panels[k], pw * (double)k, top, pw, height - top, &c);
    }
    if (cairo_status(cr) != CAIRO_STATUS_SUCCESS) {
        st = ddts_error_set(err, DDTS_ENOMEM, "%s: drawing failed: %s", path,
                            cairo_status_to_string(cairo_status(cr)));
        goto out;
    }
    cairo_surface_flush(surf);
    struct ddts_atomic_file f;
    st = ddts_atomic_open(&f, path, err);
    if (st != DDTS_OK)
        goto out;
    if (cairo_surface_write_to_png_stream(surf, write_png_chunk, f.fp) != CAIRO_STATUS_SUCCESS) {
        ddts_atomic_abort(&f);
        st = ddts_error_set(err, DDTS_EIO, "%s: cannot write the PNG", path);
        goto out;
    }
    st = ddts_atomic_commit(&f, err);
out:
    cairo_destroy(cr);
    cairo_surface_destroy(surf);
    return st;
}

/* A history column as a contiguous array (NULL when absent). */
static double *column(const struct ddts_csv_history *h, const char *key, bool *oom)
{
    long c = ddts_csv_history_column(h, key);
    if (c < 0)
        return NULL;
    double *v = ddts_mallocarray(h->n_epochs ? h->n_epochs : 1, sizeof *v);
    if (v == NULL) {
        *oom = true;
        return NULL;
    }
    for (size_t i = 0; i < h->n_epochs; i++)
        v[i] = h->values[i * h->n_keys + (size_t)c];
    return v;
}

/* Epoch numbers counted from 1, as a reader expects. */
static double *epochs_x(const struct ddts_csv_history *h, bool *oom)
{
    double *x = ddts_mallocarray(h->n_epochs ? h->n_epochs : 1, sizeof *x);
    if (x == NULL) {
        *oom = true;
        return NULL;
    }
    for (size_t i = 0; i < h->n_epochs; i++)
        x[i] = (double)h->epochs[i] + 1;
    return x;
}

/* The metric of the second panel: accuracy (Keras 2/3) or acc (Keras 1), else
 * the first column that is neither a loss nor a validation figure. */
static const char *second_metric(const struct ddts_csv_history *h)
{
    if (ddts_csv_history_column(h, "accuracy") >= 0)
        return "accuracy";
    if (ddts_csv_history_column(h, "acc") >= 0)
        return "acc";
    for (size_t i = 0; i < h->n_keys; i++)
        if (strcmp(h->keys[i], "loss") != 0 && strncmp(h->keys[i], "val_", 4) != 0)
            return h->keys[i];
    /* Validation figures only (the server's global model): val_<metric>. */
    if (ddts_csv_history_column(h, "val_accuracy") >= 0)
        return "accuracy";
    for (size_t i = 0; i < h->n_keys; i++)
        if (strncmp(h->keys[i], "val_", 4) == 0 && strcmp(h->keys[i], "val_loss") != 0)
            return h->keys[i] + 4;
    return NULL;
}

enum ddts_status ddts_plot_history(const char *path, const char *title,
                                   const struct ddts_csv_history *h, struct ddts_error *err)
{
    if (h == NULL || h->n_epochs == 0 || ddts_csv_history_column(h, "loss") < 0)
        return ddts_error_set(err, DDTS_EINVAL, "%s: the history has no loss column or no rows",
                              path);
    const char *metric = second_metric(h);
    char val_metric[80];
    snprintf(val_metric, sizeof val_metric, "val_%s", metric ? metric : "");
    bool oom = false;
    double *x = epochs_x(h, &oom);
    double *loss = column(h, "loss", &oom), *vloss = column(h, "val_loss", &oom);
    double *m = metric ? column(h, metric, &oom) : NULL;
    double *vm = metric ? column(h, val_metric, &oom) : NULL;
    enum ddts_status st = DDTS_OK;
    if (oom) {
        st = ddts_error_set(err, DDTS_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    struct ddts_plot_series ls[2], ms[2];
    size_t nl = 0, nm = 0;
    ls[nl++] = (struct ddts_plot_series){"training", x, loss, h->n_epochs, palette[0], false, 2};
    if (vloss != NULL)
        ls[nl++] =
            (struct ddts_plot_series){"validation", x, vloss, h->n_epochs, palette[1], true, 2};
    if (m != NULL)
        ms[nm++] = (struct ddts_plot_series){"training", x, m, h->n_epochs, palette[0], false, 2};
    if (vm != NULL)
        ms[nm++] = (struct ddts_plot_series){"validation", x, vm, h->n_epochs, palette[1], true, 2};
    char mtitle[80];
    snprintf(mtitle, sizeof mtitle, "%s", metric ? metric : "");
    if (mtitle[0] >= 'a' && mtitle[0] <= 'z')
        mtitle[0] = (char)(mtitle[0] - 'a' + 'A');
    struct ddts_plot_panel panels[2] = {
        {"Loss", "epoch", "loss", ls, nl},
        {mtitle, "epoch", metric, ms, nm},
    };
    st = ddts_plot_write_png(path, title, panels, m != NULL ? 2 : 1,
                             m != NULL ? DDTS_PLOT_WIDTH : DDTS_PLOT_WIDTH / 2 + 100,
                             DDTS_PLOT_HEIGHT, err);
out:
    ddts_free(x);
    ddts_free(loss);
    ddts_free(vloss);
    ddts_free(m);
    ddts_free(vm);
    return st;
}

enum ddts_status ddts_plot_combined(const char *path, const char *title,
                                    const struct ddts_csv_history *const *clients,
                                    const char *const *names, size_t n_clients,
                                    const struct ddts_csv_history *global, struct ddts_error *err)
{
    size_t n_h = n_clients + (global != NULL ? 1 : 0);
    if (n_h == 0)
        return ddts_error_set(err, DDTS_EINVAL, "%s: no histories to plot", path);
    /* Per history: x, loss curve, metric curve. */
    double **bufs = ddts_calloc(n_h * 3, sizeof *bufs);
    struct ddts_plot_series *ls = ddts_calloc(n_h, sizeof *ls);
    struct ddts_plot_series *ms = ddts_calloc(n_h, sizeof *ms);
    enum ddts_status st = DDTS_OK;
    bool oom = bufs == NULL || ls == NULL || ms == NULL;
    const char *metric_name = NULL;
    bool validation = false;
    size_t nl = 0, nm = 0;
    for (size_t k = 0; !oom && k < n_h; k++) {
        const struct ddts_csv_history *h = k < n_clients ? clients[k] : global;
        if (h == NULL || h->n_epochs == 0)
            continue;
        bool is_global = k == n_clients;
        const char *label = is_global ? "global" : names != NULL ? names[k] : NULL;
        uint32_t rgb = is_global ? 0x000001 : palette[k % 10];
        double width = is_global ? 3.5 : 1.6;
        bool has_val = ddts_csv_history_column(h, "val_loss") >= 0;
        validation = validation || has_val;
        bufs[3 * k] = epochs_x(h, &oom);
        bufs[3 * k + 1] = column(h, has_val ? "val_loss" : "loss", &oom);
        const char *metric = second_metric(h);
        if (metric != NULL && metric_name == NULL)
            metric_name = metric;
        char vm[80];
        snprintf(vm, sizeof vm, "val_%s", metric ? metric : "");
        if (metric != NULL)
            bufs[3 * k + 2] = column(h, ddts_csv_history_column(h, vm) >= 0 ? vm : metric, &oom);
        if (bufs[3 * k + 1] != NULL)
            ls[nl++] = (struct ddts_plot_series){
                label, bufs[3 * k], bufs[3 * k + 1], h->n_epochs, rgb, false, width};
        if (bufs[3 * k + 2] != NULL)
            ms[nm++] = (struct ddts_plot_series){
                label, bufs[3 * k], bufs[3 * k + 2], h->n_epochs, rgb, false, width};
    }
    if (oom) {
        st = ddts_error_set(err, DDTS_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    char mtitle[96];
    snprintf(mtitle, sizeof mtitle, "%s%s", validation ? "Validation " : "",
             metric_name ? metric_name : "");
    struct ddts_plot_panel panels[2] = {
        {validation ? "Validation loss" : "Loss", "epoch", "loss", ls, nl},
        {mtitle, "epoch", metric_name, ms, nm},
    };
    st = ddts_plot_write_png(path, title, panels, nm > 0 ? 2 : 1, DDTS_PLOT_WIDTH, DDTS_PLOT_HEIGHT,
                             err);
out:
    for (size_t k = 0; bufs != NULL && k < n_h * 3; k++)
        ddts_free(bufs[k]);
    ddts_free(bufs);
    ddts_free(ls);
    ddts_free(ms);
    return st;
}
