"""The report page's stylesheet and script, inlined into every page (no file to fetch).

The state colours come from ``report_graph.COLOURS`` as CSS variables (``--c``), set per
``st-<state>`` class by ``report_html``; the script only enhances the page the server drew.
"""

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 auto;padding:0 1.5em 2em;max-width:1240px;
color:#222;background:#fff}
h1{font-size:1.4em;margin:.8em 0 .2em}h2{font-size:1.15em;margin:1.4em 0 .4em;
border-bottom:1px solid #ddd}
code,pre{font:12px ui-monospace,monospace}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1em;margin:0}
dt{color:#666}dd{margin:0}ul.runs{margin:0;padding:0;list-style:none}
.chip{display:inline-block;padding:0 .5em;border-radius:.7em;background:var(--c,#eee);
color:#000;font-size:12px;margin:0 .2em .1em 0;border:1px solid rgba(0,0,0,.15)}
.chip.wait{background:repeating-linear-gradient(45deg,#ccc 0 3px,#fff 3px 6px)}
.note,.live{color:#555}.live{color:#1565c0;font-weight:600}
.scroll{overflow:auto}
svg text{font:11px system-ui,sans-serif;fill:#333}
svg.timeline text.label{text-anchor:end}svg.timeline text.tick{text-anchor:middle;fill:#777}
svg.timeline line.axis{stroke:#999}svg.timeline line.tick{stroke:#eee}
svg.timeline rect.stripe{fill:#fafafa}
svg.timeline rect.bar{fill:var(--c,#999)}svg.timeline rect.bar.open{opacity:.6}
svg.timeline rect.wait{fill:#ccc}svg.timeline g.gap rect{fill:#f3f3f3}
svg.timeline g.gap text{text-anchor:middle;fill:#777;font-size:10px}
svg.timeline polygon.concurrency{fill:#bbdefb;stroke:#64b5f6}
svg.timeline g.attempt{cursor:pointer}svg.timeline g.attempt:hover rect.bar,
svg.timeline g.attempt.picked rect.bar{stroke:#000;stroke-width:1}
svg.graph path{fill:none;stroke:#888}svg.graph path.member{stroke-dasharray:4 3;stroke:#bbb}
svg.graph text{text-anchor:middle}svg.graph g.group rect{stroke:#555;stroke-dasharray:3 2}
table.tasks{border-collapse:collapse;width:100%;table-layout:fixed}
th,td{text-align:left;padding:.15em .5em;border-bottom:1px solid #eee;vertical-align:top;
overflow-wrap:anywhere}th{background:#f5f5f5}div.chunk{content-visibility:auto}
table.tasks tr td:nth-child(2){box-shadow:inset 6px 0 var(--c);padding-left:12px}
tr.detail td{background:#fff8f8}pre.stderr{margin:.2em 0;padding:.4em;background:#fff;
border:1px solid #f3caca;white-space:pre-wrap;max-height:16em;overflow:auto}
#detail{position:fixed;right:1em;bottom:1em;max-width:40em;background:#fff;border:1px solid
#999;box-shadow:0 2px 8px rgba(0,0,0,.3);padding:.5em 1em}#detail pre{white-space:pre-wrap}
#detail-close{float:right}input.filter{margin:.3em 0;padding:.2em .4em;width:20em}
@media print{#detail,input.filter{display:none}.scroll{overflow:visible}
svg{max-width:100%;height:auto}div.chunk{content-visibility:visible}
tr{break-inside:avoid}body{max-width:none}}
"""

# Works on the DOM the server drew: nothing here is needed to read the page.
JS = """
(function(){
'use strict';
var panel=document.getElementById('detail'),text=document.getElementById('detail-text');
var picked=null;
document.getElementById('detail-close').addEventListener('click',function(){
  panel.hidden=true;if(picked){picked.classList.remove('picked');picked=null;}});
var tl=document.querySelector('svg.timeline');
if(tl){tl.addEventListener('click',function(ev){
  var g=ev.target.closest('g.attempt');if(!g)return;
  if(picked)picked.classList.remove('picked');picked=g;g.classList.add('picked');
  text.textContent=g.querySelector('title').textContent;panel.hidden=false;});}
var table=document.getElementById('task-table');
if(table){var box=document.createElement('input');box.className='filter';box.type='search';
  box.placeholder='filter tasks by name or state';
  table.parentNode.insertBefore(box,table);
  box.addEventListener('input',function(){var q=box.value.toLowerCase();
    table.querySelectorAll('tbody tr').forEach(function(tr){
      var row=tr.classList.contains('detail')?tr.previousElementSibling:tr;
      tr.hidden=q!==''&&row.textContent.toLowerCase().indexOf(q)<0;});});}
document.documentElement.setAttribute('data-bars',
  String(document.querySelectorAll('svg.timeline g.attempt').length));
})();
"""
