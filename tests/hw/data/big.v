module big(clk, we, waddr, wdata, raddr, rdata);
  input clk; input we;
  input [13:0] waddr; input [71:0] wdata; input [13:0] raddr;
  output reg [71:0] rdata;
  reg [71:0] mem [0:16383];
  always @(posedge clk) begin
    if (we) mem[waddr] <= wdata;
    rdata <= mem[raddr];
  end
endmodule
