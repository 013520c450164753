--[[
Quarto adapter for reports/report.lua (the Quarto renderer runs this filter first, then report.lua).

report.lua was written for pandoc's ipynb reader, which gives each code cell as a Div with classes
`cell code` holding one Div `output` per output (`stream`/`error` for stdout/stderr and errors),
a Markdown output as a RawBlock "markdown", and an image's text/plain sibling as a CodeBlock.
Quarto converts notebooks itself: `.cell` Divs with `.cell-output-display|-stdout|-stderr|-error`
outputs. pipelines/render/quarto.py stages each notebook so that Markdown outputs reach the filters
unparsed (a ```{=markdown} raw block) and each image's text/plain description is the cell's
`fig-alt`, and a chart's data file name (the image's `data-csv` metadata) the cell's `fig-scap`;
this filter renames the classes, turns `fig-alt` back into the CodeBlock sibling and `fig-scap` back
into the image's `data-csv` attribute (report.lua links the file under the chart), so
that report.lua applies the same rules as in the built-in renderer (Markdown outputs read without
raw HTML, links, images or math; the best output per display; stream output dropped; alt text).
]]

local function has_class(el, cls)
  for _, c in ipairs(el.classes or {}) do
    if c == cls then return true end
  end
  return false
end

local function adapt_output(div)
  div.classes:insert("output")
  if has_class(div, "cell-output-stdout") or has_class(div, "cell-output-stderr") then
    div.classes:insert("stream")
  elseif has_class(div, "cell-output-error") then
    div.classes:insert("error")
  end
  local content = pandoc.List()
  for _, b in ipairs(div.content) do
    content:insert(b)
    if (b.t == "Para" or b.t == "Plain") and #b.content == 1 and b.content[1].t == "Image" then
      local img = b.content[1]
      local alt = img.attributes["fig-alt"]
      img.attributes["fig-alt"] = nil
      local csv = img.attributes["fig-scap"]
      img.attributes["fig-scap"] = nil
      if csv ~= nil and csv ~= "" then img.attributes["data-csv"] = csv end
      if alt ~= nil and alt ~= "" then content:insert(pandoc.CodeBlock(alt)) end
    end
  end
  div.content = content
  return div
end

function Div(div)
  if has_class(div, "cell-output") then
    return adapt_output(div)
  end
  if has_class(div, "cell") and not has_class(div, "code") then
    div.classes:insert("code")
    return div
  end
  return nil
end

return { { Div = Div } }
