module mac(clk, rst, we, waddr, wdata, raddr, a, b, sel, acc, acc_sh, rdata);
  input clk; input rst; input we;
  input [9:0] waddr; input [15:0] wdata; input [9:0] raddr;
  input [15:0] a; input [15:0] b; input [2:0] sel;
  output reg [39:0] acc; output reg [39:0] acc_sh; output reg [15:0] rdata;
  reg [15:0] mem [0:1023];
  reg [31:0] prod;
  always @(posedge clk) begin
    if (we) mem[waddr] <= wdata;
    rdata <= mem[raddr];
    acc_sh <= acc >> sel;
    prod <= a * b;
    if (rst) acc <= 0; else acc <= acc + prod;
  end
endmodule
