function sortTable(th){
  var table=th.closest('table'), body=table.tBodies[0], i=th.cellIndex;
  var asc=th.getAttribute('data-dir')!=='asc';
  Array.prototype.forEach.call(table.tHead.rows[0].cells,function(c){c.removeAttribute('data-dir');});
  th.setAttribute('data-dir',asc?'asc':'desc');
  var rows=Array.prototype.slice.call(body.rows);
  function key(r){var c=r.cells[i],v=c.getAttribute('data-v');
    if(v===null)v=c.textContent; var f=parseFloat(v);
    return (v!==''&&!isNaN(f)&&isFinite(v))?f:v.toLowerCase();}
  rows.sort(function(a,b){var x=key(a),y=key(b);
    if(typeof x!==typeof y){return (typeof x==='number')?-1:1;}
    if(x<y)return asc?-1:1; if(x>y)return asc?1:-1; return 0;});
  rows.forEach(function(r){body.appendChild(r);});
}
document.querySelectorAll('th.sortable').forEach(function(th){
  th.addEventListener('click',function(){sortTable(th);});});
function openTarget(){var id=location.hash.slice(1); var el=id&&document.getElementById(id);
  while(el){if(el.tagName==='DETAILS')el.open=true; el=el.parentElement;}}
window.addEventListener('hashchange',openTarget); openTarget();
