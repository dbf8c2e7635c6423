//! Charts drawn on the server as inline SVG: no script, no library, readable in both
//! colour schemes (they take the text colour), and with each value also written out.

use std::fmt::Write;

use super::escape;

const ROW: usize = 22;
const LABEL: usize = 110;
const WIDTH: usize = 360;

/// A horizontal bar per item, longest = the largest value; an item with no value shows
/// "–" and no bar.
pub fn bars(title: &str, unit: &str, items: &[(&str, Option<f64>)]) -> String {
    let max = items.iter().filter_map(|(_, v)| *v).fold(0.0_f64, f64::max);
    let height = ROW * items.len().max(1) + 8;
    let mut svg = format!(
        "<svg class=chart role=img viewBox=\"0 0 {WIDTH} {height}\" width=\"100%\" aria-label=\"{}\">",
        escape(title)
    );
    if items.is_empty() {
        let _ = write!(svg, "<text x=\"0\" y=\"16\" class=muted>no runs in this window</text>");
    }
    let span = (WIDTH - LABEL - 70) as f64;
    for (i, (name, value)) in items.iter().enumerate() {
        let y = i * ROW + 4;
        let label: String = name.chars().take(22).collect();
        let _ = write!(svg, "<text x=\"0\" y=\"{}\">{}</text>", y + 14, escape(&label));
        match value {
            Some(v) => {
                let w = if max > 0.0 { (v / max * span).max(1.0) } else { 1.0 };
                let _ = write!(
                    svg,
                    "<rect x=\"{LABEL}\" y=\"{y}\" width=\"{w:.1}\" height=\"{}\" rx=\"2\"><title>{}: {v:.1}{unit}</title></rect>\
                     <text x=\"{:.1}\" y=\"{}\">{v:.1}{unit}</text>",
                    ROW - 6,
                    escape(name),
                    LABEL as f64 + w + 6.0,
                    y + 14
                );
            }
            None => {
                let _ = write!(svg, "<text x=\"{LABEL}\" y=\"{}\">–</text>", y + 14);
            }
        }
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    #[test]
    fn bars_scale_to_the_largest_and_escape_names() {
        let svg = super::bars("Success", "%", &[("a<b", Some(50.0)), ("web", Some(100.0)), ("new", None)]);
        assert!(svg.contains("a&lt;b"), "{svg}");
        assert!(svg.contains("width=\"180.0\""), "the largest bar spans the chart: {svg}");
        assert!(svg.contains("width=\"90.0\""), "half of it: {svg}");
        assert!(svg.contains(">–</text>"), "{svg}");
        assert_eq!(svg.matches("<rect").count(), 2);
    }
}
