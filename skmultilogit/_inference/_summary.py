"""The coefficient table as text and as HTML."""

import html


class Summary:
    """A coefficient table that prints as text and renders as HTML."""

    def __init__(self, caption, header, table):
        self.caption = caption
        self.header = header
        self.table = table

    def _cells(self):
        def number(value):
            return f"{value:.4g}" if abs(value) >= 1e-4 or value == 0 else f"{value:.2e}"

        return [
            [str(row[0]), str(row[1])] + [number(value) for value in row[2:]] for row in self.table
        ]

    def __str__(self):
        cells = self._cells()
        widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(self.header)]

        def line(values):
            return "  ".join(
                v.ljust(w) if i < 2 else v.rjust(w)
                for i, (v, w) in enumerate(zip(values, widths, strict=True))
            )

        rule = "-" * len(line(self.header))
        return "\n".join([self.caption, rule, line(self.header), rule] + [line(c) for c in cells])

    def __repr__(self):
        return str(self)

    def _repr_html_(self):
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.header)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>"
            for cells in self._cells()
        )
        return (
            f"<table><caption>{html.escape(self.caption)}</caption>"
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        )
