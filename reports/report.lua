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
  notebook escapes data with pipelines.reports.md_escape; this is the second line of defence.
  Markdown cells (written by the report's authors) are not data and keep their markup.
]]

local stringify = pandoc.utils.stringify
-- where the charts' data files are, relative to the report (metadata chart-data-dir, set by the
-- renderer: 13-tokyo-data); letters, digits and - only, else no data links
local chart_data_dir = nil
local is_typst = FORMAT:match("typst") ~= nil
local is_html = FORMAT:match("html") ~= nil

-- The `text` colours of pipelines/conventions.py (WCAG AA on white), as in report.css;
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
    if is_typst then
      image.attributes["width"] = "100%"
    end
    local blocks = { pandoc.Para({ image }) }
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

function Div(div)
  if has_class(div, "cell") and has_class(div, "code") then
    local out = {}
    for _, b in ipairs(div.content) do
      if b.t == "Div" and has_class(b, "output") then
        for _, x in ipairs(best_output(b)) do table.insert(out, x) end
      end
      -- CodeBlock (the source) is dropped
    end
    return out
  end
  if has_class(div, "cell") and has_class(div, "markdown") then
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

function Pandoc(doc)
  doc = unique_identifiers(doc)
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
  end
  return doc
end

local function read_meta(meta)
  local dir = meta["chart-data-dir"] and stringify(meta["chart-data-dir"]) or nil
  if dir ~= nil and dir:match("^[%w%-]+$") then chart_data_dir = dir end
  return nil
end

return {
  { Meta = read_meta },
  { Div = Div },
  { Pandoc = Pandoc },
}
