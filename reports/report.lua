--[[
Tsunagari report filter for pandoc's ipynb reader (run with --ipynb-output=all).

* Drops the code of every code cell (reports show results only).
* Picks the best output per display: text/markdown (parsed as Markdown, so tables become native
  pandoc tables in HTML and Typst) > image (the text/plain sibling becomes the image's alt text)
  > text/plain (text/html is never used). Stream output (stdout/stderr, warnings) is dropped.
* Gives repeated heading identifiers pandoc's -1, -2 suffixes (outputs are read one by one).
* Colours the comparison/change spans ([× 悪い]{.cmp-worse}) in Typst (HTML uses report.css).
* Outputs carry text from data (names, notes, survey ids), so nothing in them may become markup
  of the target format: Markdown outputs are read without raw HTML/TeX, raw attributes
  (`x`{=html}/{=typst}), citations or math, and anything raw, any link or image that remains is
  turned into literal text (an image would make pandoc embed a local file, e.g. ![](/etc/passwd)),
  except a link to a page of this site (a relative path like prefectures/13-tokyo.html).
  text/html outputs are never passed through (the text/plain sibling is shown instead). The
  notebook escapes data with pipelines.outputs.reports.md_escape; this is the second line of defence.
  Markdown cells (written by the report's authors) are not data and keep their markup; one tagged
  "national" or "prefecture" is shown in that kind of report only.
]]

local stringify = pandoc.utils.stringify
-- where the charts' data files are, relative to the report (metadata chart-data-dir, set by the
-- renderer: 13-tokyo-data); letters, digits and - only, else no data links
local chart_data_dir = nil
local is_typst = FORMAT:match("typst") ~= nil
local is_html = FORMAT:match("html") ~= nil
-- pipelines/outputs/charts.py PHONE_MEDIA: the screens that get a chart's phone layout
local PHONE_MEDIA = "(max-width: 640px)"

-- The `text` colours of pipelines/domain/conventions.py (WCAG AA on white), as in report.css;
-- tests/test_conventions.py checks that the three agree.
local COLOURS = {
  ["cmp-better"] = "#005A8C", ["cmp-worse"] = "#A33F00", ["cmp-similar"] = "#595959",
  ["cmp-higher"] = "#6A3D9A", ["cmp-lower"] = "#6A3D9A", ["cmp-not_compared"] = "#595959",
  ["chg-increase"] = "#8F4A00", ["chg-decrease"] = "#005A8C",
}

local function has_class(el, cls)
  for _, c in ipairs(el.classes or {}) do
    if c == cls then return true end
  end
  return false
end

local function is_repr(text)
  return text:match("^<IPython%.") ~= nil or text:match("^<Figure size") ~= nil
      or text:match("^<ggplot") ~= nil
end

-- Parse a Markdown output with narrow "columns" so that pipe tables always get relative widths
-- (taken from the separator dashes) and wrap inside the page in Typst.
local SAFE_MARKDOWN = "markdown-raw_html-raw_tex-raw_attribute-citations-tex_math_dollars"
  .. "-tex_math_single_backslash-autolink_bare_uris-implicit_figures"

-- Literal text in place of anything from an output that could be markup of the target format.
local NEUTRALISE = {
  RawInline = function(el) return pandoc.Str(el.text) end,
  RawBlock = function(el) return pandoc.CodeBlock(el.text) end,
  Link = function(el)
    -- Kept only for a page of this site: a relative .html path of letters, digits, - and / (the
    -- national table's links to the prefecture reports; relative from the PDF too); else text.
    local t = el.target or ""
    if t:match("^[%w%-/]+%.html$") and not t:match("^/") and not t:match("//") then
      return pandoc.Link(el.content, t)
    end
    return el.content
  end,
  Image = function(el)
    local alt = stringify(el.caption or el.content or {})
    return pandoc.Str(alt ~= "" and alt or "図")
  end,
  Cite = function(el) return el.content end,
  Math = function(el) return pandoc.Str(el.text) end,
}

local function literal(blocks)
  return pandoc.Pandoc(blocks):walk(NEUTRALISE).blocks
end

local function read_markdown(text)
  local ok, doc = pcall(pandoc.read, text, SAFE_MARKDOWN, { columns = 20 })
  if ok then return literal(doc.blocks) end
  return { pandoc.Para({ pandoc.Str(text) }) }
end

local function best_output(div)
  if has_class(div, "stream") or has_class(div, "error") then
    return {}
  end
  local md, image, html, plain = nil, nil, nil, nil
  for _, b in ipairs(div.content) do
    if b.t == "RawBlock" and b.format == "markdown" and md == nil then
      md = b.text
    elseif b.t == "RawBlock" and b.format == "html" and html == nil then
      html = b
    elseif (b.t == "Para" or b.t == "Plain") and #b.content == 1 and b.content[1].t == "Image" then
      image = b.content[1]
    elseif b.t == "CodeBlock" and plain == nil then
      plain = b.text
    end
  end
  if md ~= nil then
    return read_markdown(md)
  end
  if image ~= nil then
    local alt = (plain ~= nil and not is_repr(plain)) and plain or "図"
    image.caption = { pandoc.Str(alt) }
    image.attributes["alt"] = nil
    -- the chart's data file (charts.show(..., name=...)): a link under the chart, to the
    -- file the renderer writes beside the report (render.common.write_chart_data)
    local data = image.attributes["data-csv"]
    image.attributes["data-csv"] = nil
    -- the other renditions of charts.show (issue #23): the phone layout, shown on a narrow screen
    -- (a <picture> source, inlined: pandoc embeds only the img's own src), and the chart as SVG
    -- for the PDF (a raw Typst block, which the HTML writer drops; the Typst pass draws it)
    local phone, print_svg = image.attributes["data-phone"], image.attributes["data-print"]
    image.attributes["data-phone"] = nil
    image.attributes["data-print"] = nil
    if is_typst then
      image.attributes["width"] = "100%"
    end
    local para = pandoc.Para({ image })
    if phone ~= nil and phone:match("^[%w+/]+=*$") then
      para = pandoc.Para({ pandoc.RawInline("html", '<picture><source media="' .. PHONE_MEDIA
        .. '" srcset="data:image/png;base64,' .. phone .. '">'), image, pandoc.RawInline("html", "</picture>") })
    end
    local blocks = { para }
    if print_svg ~= nil and print_svg:match("^<%?xml") and print_svg:match("</svg>%s*$") then
      table.insert(blocks, pandoc.RawBlock("typst", print_svg))
    end
    -- (the filter runs once, when pandoc reads the notebook for both writers: the PDF has the
    -- link too, relative like its links to the prefecture reports)
    if data ~= nil and chart_data_dir ~= nil and data:match("^[%w][%w_%-]*%.csv$") then
      table.insert(blocks, pandoc.Para({ pandoc.Link({ pandoc.Str("この図のデータ（CSV）") },
        chart_data_dir .. "/" .. data, "", pandoc.Attr("", {}, { { "download", "" } })) }))
      blocks[#blocks] = pandoc.Div({ blocks[#blocks] }, pandoc.Attr("", { "chart-data" }))
    end
    return { pandoc.Div(blocks, pandoc.Attr("", { "chart" })) }
  end
  -- text/html outputs are never passed through (they would carry data as raw HTML).
  if plain ~= nil and not is_repr(plain) then
    return { pandoc.CodeBlock(plain) }
  end
  return {}
end


-- A chart and its table (in the same cell: the chart then its table, or the table, its footnotes
-- and then the chart) are put in one Div of class "keep", which the Typst pass keeps on one page
-- when the two fit in one (HTML: no change).
local function is_chart(b)
  return b ~= nil and b.t == "Div" and has_class(b, "chart")
end

function keep_charts_with_tables(blocks)
  local out, i = {}, 1
  while i <= #blocks do
    local b = blocks[i]
    local last = nil
    if is_chart(b) and blocks[i + 1] ~= nil and blocks[i + 1].t == "Table" then
      last = i + 1
    elseif b.t == "Table" then
      -- the table, up to two paragraphs (its footnotes), then its chart
      for j = i + 1, math.min(i + 3, #blocks) do
        if is_chart(blocks[j]) then last = j; break end
        if blocks[j].t ~= "Para" and blocks[j].t ~= "Plain" then break end
      end
    end
    if last ~= nil then
      local group = {}
      for j = i, last do table.insert(group, blocks[j]) end
      table.insert(out, pandoc.Div(group, pandoc.Attr("", { "keep" })))
      i = last + 1
    else
      table.insert(out, b)
      i = i + 1
    end
  end
  return out
end

-- A Markdown cell tagged "national" or "prefecture" is text of that kind of report only; the kind
-- is the papermill parameter pref_code (0 = national) recorded in the executed notebook (nil when
-- it is not there: every cell is shown). pipelines/render/common.py shown_cells is the same rule
-- for the Quarto renderer.
local report_kind = nil

local function shown_here(div)
  local tags = div.attributes["tags"] or ""
  if report_kind == nil then return true end
  local other = report_kind == "national" and "prefecture" or "national"
  return tags:match('"' .. other .. '"') == nil
end

function Div(div)
  if has_class(div, "cell") and has_class(div, "code") then
    local out = {}
    for _, b in ipairs(div.content) do
      if b.t == "Div" and has_class(b, "output") then
        for _, x in ipairs(best_output(b)) do table.insert(out, x) end
      end
      -- CodeBlock (the source) is dropped
    end
    return keep_charts_with_tables(out)
  end
  if has_class(div, "cell") and has_class(div, "markdown") then
    if not shown_here(div) then return {} end
    local out = {}
    for _, b in ipairs(div.content) do
      if not (b.t == "RawBlock" and b.format == "html" and b.text:match("^<!%-%-")) then
        table.insert(out, b)
      end
    end
    return out
  end
  return nil
end

-- Typst styling of classed spans/divs (HTML gets report.css).
function Span(span)
  if not is_typst then return nil end
  for _, c in ipairs(span.classes) do
    local col = COLOURS[c]
    if col ~= nil then
      local out = { pandoc.RawInline("typst", '#text(fill: rgb("' .. col .. '"), weight: "bold")[') }
      for _, x in ipairs(span.content) do table.insert(out, x) end
      table.insert(out, pandoc.RawInline("typst", "]"))
      return out
    end
    if c == "footnote" then
      local out = { pandoc.RawInline("typst", "#text(size: 7.5pt, fill: rgb(\"#444444\"))[") }
      for _, x in ipairs(span.content) do table.insert(out, x) end
      table.insert(out, pandoc.RawInline("typst", "]"))
      return out
    end
  end
  return nil
end

-- Markdown outputs are read one by one, so two with the same heading (### 施策データ in each
-- section) got the same identifier: a duplicate id (invalid HTML; the table of contents linked
-- the first only). Repeats get pandoc's own suffixes -1, -2, ... in document order.
local function unique_identifiers(doc)
  local seen = {}
  return doc:walk({ Header = function(h)
    local id = h.identifier
    if id == "" then return nil end
    if seen[id] == nil then
      seen[id] = 0
      return nil
    end
    local n = seen[id]
    repeat
      n = n + 1
    until seen[id .. "-" .. n] == nil
    seen[id] = n
    h.identifier = id .. "-" .. n
    seen[h.identifier] = 0
    return h
  end })
end

-- HTML: a wide table scrolls inside its own region (not the page, WCAG 1.4.10), which takes keyboard
-- focus and is named after the table's caption (else "表"); pipelines.domain.conventions.scrollable_tables
-- does the same for the site pages.
local function scroll_region(tbl)
  local name = pandoc.utils.stringify(tbl.caption.long or {})
  if name == "" then name = "表" end
  -- attributes as a list of pairs: a Lua table's keys come out in no fixed order, and the same
  -- report must give the same bytes in any worker (tests/test_build.py TestJobs)
  return pandoc.Div({ tbl }, pandoc.Attr("", { "table-wrap" },
    { { "role", "region" }, { "tabindex", "0" }, { "aria-label", name } }))
end

-- Typst: charts, tables and the charts kept with their tables -----------------------------------

-- The text of a Typst string literal ("..."): backslash and quote escaped, control characters as
-- a space (the alt text comes from data).
local function typst_string(text)
  text = text:gsub("[%c]", " "):gsub("\\", "\\\\"):gsub('"', '\\"')
  return '"' .. text .. '"'
end

-- Height / width of an image file (PNG header, or an SVG's width and height attributes); nil when
-- it cannot be read.
local function aspect(path)
  local f = io.open(path, "rb")
  if f == nil then return nil end
  local head = f:read(2048) or ""
  f:close()
  if head:sub(1, 8) == "\137PNG\r\n\26\n" then
    local function u32(i)
      local a, b, c, d = head:byte(i, i + 3)
      return ((a * 256 + b) * 256 + c) * 256 + d
    end
    local w, h = u32(17), u32(21)
    if w > 0 then return h / w end
  end
  local w = head:match('<svg[^>]-%swidth="([%d%.]+)')
  local h = head:match('<svg[^>]-%sheight="([%d%.]+)')
  if w ~= nil and h ~= nil and tonumber(w) > 0 then return tonumber(h) / tonumber(w) end
  return nil
end

local TEXT_WIDTH_MM = 178    -- report.typ: A4 less 16 mm margins
local KEEP_MAX_MM = 100      -- at most 40% of a page's body (~250 mm): the hole it may leave
local ROW_MM = 8             -- a table row at 7.8 pt, wrapped to two lines at most
local SHORT_TABLE_ROWS = 8   -- a table of at most this many rows (~75 mm) is not split across pages

local function table_rows(tbl)
  local n = 1   -- the header
  for _, body in ipairs(tbl.bodies or {}) do n = n + #body.body end
  return n
end

-- The chart's SVG (charts.show's print rendition: a raw Typst block beside the image), or nil.
local function print_svg(div)
  local svg = nil
  for _, b in ipairs(div.content) do
    if b.t == "RawBlock" and b.format == "typst" and b.text:match("^<%?xml") then svg = b.text end
  end
  return svg
end

-- Height / width of an SVG's text (its width and height attributes, e.g. "518.4pt").
local function svg_aspect(svg)
  local w = svg:match('<svg[^>]-%swidth="([%d%.]+)')
  local h = svg:match('<svg[^>]-%sheight="([%d%.]+)')
  if w ~= nil and h ~= nil and tonumber(w) > 0 then return tonumber(h) / tonumber(w) end
  return nil
end

-- The chart as a Typst image with its alternative text (a Figure tag with /Alt in the PDF; the
-- PDF/UA-1 standard that pandoc.py compiles with refuses an image without it): the SVG when the
-- chart has one (vector; its text in the report's font), else the PNG file.
local function typst_chart(div)
  local img = nil
  div:walk({ Image = function(el) img = el end })
  if img == nil then return { div } end
  local alt = stringify(img.caption or {})
  if alt == "" then alt = "図" end
  local svg = print_svg(div)
  local source = svg ~= nil and ("bytes(" .. typst_string(svg) .. "), format: \"svg\"") or typst_string(img.src)
  return { pandoc.RawBlock("typst", "#block(breakable: false, width: 100%, image(" .. source
    .. ", width: 100%, alt: " .. typst_string(alt) .. "))") }
end

local function chart_mm(div)
  local svg = print_svg(div)
  if svg ~= nil then
    local r = svg_aspect(svg)
    return r ~= nil and TEXT_WIDTH_MM * r or nil
  end
  local mm = nil
  div:walk({ Image = function(el)
    local r = aspect(el.src)
    if r ~= nil then mm = TEXT_WIDTH_MM * r end
  end })
  return mm
end

local function unbreakable(blocks)
  local out = { pandoc.RawBlock("typst", "#block(breakable: false, width: 100%)[") }
  for _, x in ipairs(blocks) do table.insert(out, x) end
  table.insert(out, pandoc.RawBlock("typst", "]"))
  return out
end

local function typst_table(tbl)
  if table_rows(tbl) <= SHORT_TABLE_ROWS then return unbreakable({ tbl }) end
  return { tbl }
end

local TYPST_BLOCKS = {
  traverse = "topdown",
  Div = function(div)
    if has_class(div, "chart") then return typst_chart(div), false end
    if has_class(div, "keep") then
      local mm, blocks = 0, {}
      for _, b in ipairs(div.content) do
        if b.t == "Div" and has_class(b, "chart") then
          mm = mm + (chart_mm(b) or KEEP_MAX_MM)
          for _, x in ipairs(typst_chart(b)) do table.insert(blocks, x) end
        elseif b.t == "Table" then
          mm = mm + 10 + ROW_MM * table_rows(b)
          for _, x in ipairs(typst_table(b)) do table.insert(blocks, x) end
        else
          mm = mm + 8
          table.insert(blocks, b)
        end
      end
      if mm <= KEEP_MAX_MM then return unbreakable(blocks), false end
      return blocks, false
    end
    return nil
  end,
  Table = function(tbl) return typst_table(tbl), false end,
}

function Pandoc(doc)
  doc = unique_identifiers(doc)
  if not is_typst then  -- the reader's pass (to JSON), whose tables reach the HTML writer
    doc = doc:walk({ Table = scroll_region })
  end
  -- Second pass so that Span/Div styling also applies to blocks parsed from Markdown outputs.
  if is_typst then
    doc = doc:walk({ Span = Span, Div = function(div)
      if has_class(div, "synthetic-note") then
        local out = { pandoc.RawBlock("typst", '#block(fill: rgb("#FFF3CD"), stroke: rgb("#B8860B"), inset: 8pt, radius: 3pt, width: 100%)[') }
        for _, x in ipairs(div.content) do table.insert(out, x) end
        table.insert(out, pandoc.RawBlock("typst", "]"))
        return out
      end
      return nil
    end })
    -- the HTML scroll regions (added when the notebook was read) mean nothing on paper
    doc = doc:walk({ Div = function(div)
      if has_class(div, "table-wrap") then return div.content end
      return nil
    end })
    doc = doc:walk(TYPST_BLOCKS)
    -- The publication details (report.typ's publication-block) under the title.
    for i, b in ipairs(doc.blocks) do
      if b.t == "Header" and b.level == 1 then
        doc.blocks:insert(i + 1, pandoc.RawBlock("typst", "#publication-block"))
        break
      end
    end
  end
  return doc
end

local function read_meta(meta)
  local dir = meta["chart-data-dir"] and stringify(meta["chart-data-dir"]) or nil
  if dir ~= nil and dir:match("^[%w%-]+$") then chart_data_dir = dir end
  local jupyter = meta["jupyter"]
  local params = jupyter and jupyter["papermill"] and jupyter["papermill"]["parameters"]
  local code = params and params["pref_code"] and tonumber(stringify(params["pref_code"]))
  if code ~= nil then report_kind = code == 0 and "national" or "prefecture" end
  return nil
end

return {
  { Meta = read_meta },
  { Div = Div },
  { Pandoc = Pandoc },
}
